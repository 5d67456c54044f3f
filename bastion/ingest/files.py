"""One framework for every import of files: scanner output, Bastion's JSON graph, detections,
ATT&CK bundles, the KEV catalog and EPSS scores.

An import is a recorded run (`Run`, a row of `import_run` of its kind: bastion.store.runs.KINDS)
started before the first file is opened and finished — succeeded, partial or failed — whatever
happens, in transactions of their own, so that a refused import is recorded too. Its inputs are
what the user named (`Run.inputs`): files, every file below a directory (sorted, hidden ones
skipped), `-` for standard input; `Run.open` reads one as a stream, gunzipped when it is gzip,
keeping the SHA-256 and size of the bytes as stored and reporting progress. Each input has a
`FileResult` (its format, hash, status, the problems found in it — at most MAX_PROBLEMS listed,
the rest counted — and what the importer counts); the run keeps them all with its notes.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Protocol

from bastion.ingest import limits
from bastion.ingest.inputs import Input, Opened, check_exist, expand, shown
from bastion.store.writer import new_correlation_id

MAX_PROBLEMS = 50  # listed per file; the rest are counted
MAX_PROBLEM_CHARS = 300  # of one problem's place and reason (limits.excerpt)


@dataclass
class FileResult:
    """One input of a run. Importers subclass it with their counts (dataclass fields with
    defaults)."""

    name: str
    format: str | None = None
    sha256: str | None = None
    bytes: int = 0
    status: str = "imported"  # imported | rejected | ignored (not of the run's kind, in a directory)
    skipped: int = 0  # records or items left out of an imported file (listed as problems)
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0  # beyond those listed

    def problem(self, where: str, reason: str) -> None:
        if len(self.errors) < MAX_PROBLEMS:
            # A reason quoting an input value quotes at most an excerpt (a 100 MB host name).
            where, reason = limits.excerpt(where, MAX_PROBLEM_CHARS), limits.excerpt(reason, MAX_PROBLEM_CHARS)
            self.errors.append(f"{self.name}: {where}: {reason}" if where else f"{self.name}: {reason}")
        else:
            self.more_errors += 1

    @property
    def left_out(self) -> bool:
        """Whether something of the file was left out (the run is then partial)."""
        return bool(self.skipped)

    def reject(self, reason: str, where: str = "") -> "FileResult":
        self.status = "rejected"
        self.problem(where, reason)
        return self

    def row(self) -> dict[str, Any]:
        """As the run records it: the problems counted, not listed (they are the run's errors)."""
        row = asdict(self)
        row["errors"] = len(self.errors) + self.more_errors
        return row


class Progress(Protocol):
    def start(self, name: str, size: int | None) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def records(self, count: int) -> None: ...
    def done(self, result: FileResult) -> None: ...


def run_status(files: list[FileResult]) -> str:
    """failed: nothing imported; partial: something rejected or skipped; else succeeded."""
    if not any(f.status == "imported" for f in files):
        return "failed"
    if any(f.status == "rejected" or f.left_out for f in files):
        return "partial"
    return "succeeded"


class Run:
    """One recorded import run of `kind` (see the module doc). Use as a context manager: the
    run is finished on leaving the block, as failed with the error when one escapes it.
    `result` is the importer's FileResult class (for inputs rejected before it sees them).

    `check_exist` first refuses paths that are not there (a typo) before anything is recorded."""

    def __init__(self, tenant, kind: str, *, actor: str, source: str = "",
                 options: dict[str, Any] | None = None, paths: list[str] | None = None,
                 at: datetime | None = None, progress: Progress | None = None,
                 result: type[FileResult] = FileResult):
        if paths is not None:
            check_exist(paths)
        self.tenant, self.kind, self.actor, self.progress = tenant, kind, actor, progress
        self.result = result  # the importer's FileResult class
        self.at = at or datetime.now(timezone.utc)
        self.correlation_id = new_correlation_id()
        self.files: list[FileResult] = []
        self.notes: list[str] = []
        self.counts: dict[str, Any] | None = None  # the run's totals; by default summed per file
        self._read: set[int] = set()  # FileResults (id) whose input was opened and closed
        self.status = "running"
        opts = dict(options or {})
        if paths is not None:
            opts.setdefault("paths", list(paths))
        if isinstance(opts.get("paths"), list):  # as the user knows them (inputs.named)
            opts["paths"] = [shown(p) if isinstance(p, str) else p for p in opts["paths"]]
        self.id = tenant.runs.start(kind=kind, source=source, actor=actor,
                                    correlation_id=self.correlation_id, options=opts,
                                    started_at=self.at)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(exc)

    @property
    def rejected(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "rejected"]

    def inputs(self, paths: list[str]) -> Iterator[Input]:
        """Every input the paths name; one that cannot be (an empty directory, a path that is
        not a regular file) is a rejected file of the run."""
        for item in expand(paths):
            if isinstance(item, tuple):
                name, reason = item
                self.files.append(self.result(name).reject(reason))
            else:
                yield item

    @contextmanager
    def open(self, item: Input, fr: FileResult) -> Iterator[Opened]:
        """The input as a stream (gunzipped), its hash and size set on `fr` when it is closed,
        with progress reported; an input that cannot be read (a cut-off gzip, an I/O error)
        rejects `fr` instead of escaping."""
        progress = self.progress
        if progress:
            progress.start(item.name, None if item.is_stdin else item.path.stat().st_size)
        opened = None
        try:
            opened = Opened(item, progress.advance if progress else None)
            yield opened
            if fr.sha256 is None:  # the importer may have finished it itself
                fr.sha256, fr.bytes = opened.finish()
        except (EOFError, zlib.error, OSError) as exc:
            fr.reject(f"cannot read: {exc or type(exc).__name__}")
        finally:
            if opened is not None:
                if fr.sha256 is None:  # a rejected file is recorded with its hash too
                    try:
                        fr.sha256, fr.bytes = opened.finish()
                    except (EOFError, zlib.error, OSError):
                        pass
                opened.close()
            if progress:
                progress.done(fr)
            self._read.add(id(fr))

    def add(self, fr: FileResult) -> FileResult:
        """The input's result, added to the run. An importer that commits each file in its own
        transaction adds it after that commit: the run then records it at once (`record_files`),
        so a run whose process is killed is recorded with exactly the files that committed."""
        self.files.append(fr)
        if id(fr) in self._read:
            self.tenant.runs.record_files(self.id, [f.row() for f in self.files])
        return fr

    def totals(self, keys: tuple[str, ...] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {k: sum(getattr(f, k) for f in self.files) for k in keys}
        out["files"] = len(self.files)
        out["rejected"] = len(self.rejected)
        return out

    def finish(self, error: BaseException | None = None) -> None:
        if self.status != "running":
            return
        self.status = "failed" if error is not None else run_status(self.files)
        errors = [e for f in self.files for e in f.errors] + [
            limits.excerpt(n, MAX_PROBLEM_CHARS) for n in self.notes]
        if error is not None and not errors:
            errors = [limits.excerpt(e, MAX_PROBLEM_CHARS) for e in _reasons(error)[:MAX_PROBLEMS]]
        self.tenant.runs.finish(self.id, status=self.status, files=[f.row() for f in self.files],
                                counts=self.counts if self.counts is not None else self.totals(),
                                errors=errors)


def _reasons(exc: BaseException) -> list[str]:
    problems = getattr(exc, "problems", None)
    if problems:
        return [str(p) for p in problems]
    return [str(exc) or type(exc).__name__]
