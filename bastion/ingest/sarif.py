"""SARIF 2.1.0 logs (CodeQL, Semgrep, ShellCheck converters …), streamed: each result is one
record, placed as `runs[R].results[I]`. Findings are filed per file (each file its own asset
group), so one rule in ten files is ten risks and one rule at several lines of a file is one
risk with several evidence lines.

The mapping and what is skipped: docs/formats.md#sarif.

Streaming: results are read one at a time with ijson. A result needs its run's rules and
repository: when they come before `results` (the usual order) each result is mapped as soon as
it is read; otherwise the run's results are spooled to a temporary file (memory above 8 MiB
goes to disk) and mapped when the run ends.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import tempfile
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import orjson

from bastion.ingest.records import Invalid, Malformed, Record, Sample, build

NAME = "sarif"
DESCRIPTION = "SARIF 2.1.0 JSON (code scanning: semgrep, CodeQL …)"

SPOOL_MEMORY = 8 * 1024 * 1024
_MAX_GROUP = 300
_LEVELS = {"error": "high", "warning": "medium", "note": "low", "none": "info"}
_CWE = re.compile(r"cwe[-_/ :]*0*(\d+)", re.IGNORECASE)
_SCHEMA = re.compile(rb'"\$schema"\s*:\s*"[^"]*sarif', re.IGNORECASE)
_VERSION = re.compile(rb'"version"\s*:\s*"2\.1\.0"')
_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def sniff(sample: Sample) -> bool:
    head = sample.head
    return b'"runs"' in head and bool(_SCHEMA.search(head) or _VERSION.search(head))


# -- streaming -------------------------------------------------------------------------------


def repository_name(value: str) -> str:
    """A repository as SARIF's `repositoryUri` or the user's `--repository` names it, without a
    trailing `/` or `.git`."""
    repo = str(value).strip().rstrip("/")
    return repo[:-4] if repo.endswith(".git") else repo


def parse(stream, *, repository: str | None = None, source: str | None = None
          ) -> Iterator[Record | Invalid]:
    """`repository` (`--repository`) names the repository of runs whose log names none; a log
    that names another one is refused. Without either, the repository is named after the tool
    and `source` (`--source`), so logs of two named scans never share a risk."""
    import ijson

    from bastion.ingest import limits

    events = limits.json_events(stream, use_float=True)  # refuses nesting beyond the limit
    version: Any = None
    saw_runs = False
    run: _Run | None = None
    r = -1
    try:
        first = next(events, None)
        if first is None:
            raise Malformed("not a SARIF log: the input is empty")
        if first[1] != "start_map":
            raise Malformed("not a SARIF log: the top level is not a JSON object")
        for prefix, event, value in events:
            if prefix == "" and event == "map_key":
                if value == "version":
                    version = _take(events)
                    _check_version(version)
                elif value == "runs":
                    saw_runs = True
            elif prefix == "runs.item":
                if event == "start_map":
                    r += 1
                    run = _Run(r, repository, source)
                elif event == "end_map" and run is not None:
                    yield from run.finish()
                    run = None
                elif event == "map_key" and run is not None:
                    if value == "tool":
                        run.tool = _take(events)
                    elif value == "versionControlProvenance":
                        run.provenance = _take(events)
                    elif value == "artifacts":
                        run.artifacts = _take(events)
            elif prefix == "runs.item.results.item" and run is not None:
                if event in ("start_map", "start_array"):
                    result = _take(events, (prefix, event, value))
                else:
                    result = value
                yield from run.result(result)
            elif prefix == "runs" and event not in ("start_array", "end_array"):
                raise Malformed("not a SARIF log: 'runs' is not an array")
    except ijson.JSONError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Malformed(f"not valid JSON ({reason})") from None
    if not saw_runs:
        raise Malformed("not a SARIF log: the top-level 'runs' member is missing")
    if version is None:
        raise Malformed("not a SARIF 2.1.0 log: the top-level 'version' member is missing")


def _check_version(version: Any) -> None:
    if version != "2.1.0":
        raise Malformed(f"not a SARIF 2.1.0 log: 'version' is {version!r}")


def _take(events, first: tuple | None = None) -> Any:
    """Build the JSON value that starts with the next event (or `first`)."""
    from ijson.common import ObjectBuilder

    builder = ObjectBuilder()
    depth = 0
    if first is None:
        first = next(events)
    pending = [first]
    while True:
        prefix, event, value = pending.pop() if pending else next(events)
        builder.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
        if depth == 0:
            return builder.value


class _Run:
    """One `runs[]` element: its context, and its results until the context is complete."""

    def __init__(self, index: int, repository: str | None = None, source: str | None = None):
        self.index, self.repository, self.source = index, repository, source
        self.count = -1
        self.tool: Any = None
        self.provenance: Any = None
        self.artifacts: Any = None
        self.spool: Any = None
        self.spool_start = 0
        self._ctx: _Context | None = None

    def context(self) -> _Context:
        if self._ctx is None:
            self._ctx = _Context(self.tool, self.provenance, self.artifacts, self.repository,
                                 self.source)
        return self._ctx

    def result(self, value: Any) -> Iterator[Record | Invalid]:
        self.count += 1
        where = f"runs[{self.index}].results[{self.count}]"
        if self.spool is None and self.tool is not None and self.provenance is not None:
            yield self._build(where, value)
            return
        if self.spool is None:
            self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, mode="w+b")
            self.spool_start = self.count
        self.spool.write(orjson.dumps(value))
        self.spool.write(b"\n")

    def finish(self) -> Iterator[Record | Invalid]:
        if self.spool is None:
            return
        spool, self.spool = self.spool, None
        with spool:
            spool.seek(0)
            for i, line in enumerate(spool, start=self.spool_start):
                yield self._build(f"runs[{self.index}].results[{i}]", orjson.loads(line))

    def _build(self, where: str, value: Any) -> Record | Invalid:
        try:
            ctx = self.context()
        except Malformed as exc:
            return Invalid(where, str(exc))
        return build(where, value, ctx.fill)


# -- mapping ---------------------------------------------------------------------------------


class _Context:
    """What every result of a run needs: tool name, rules, repository, artifacts."""

    def __init__(self, tool: Any, provenance: Any, artifacts: Any, repository: str | None = None,
                 source: str | None = None):
        driver = tool.get("driver") if isinstance(tool, dict) else None
        if not isinstance(driver, dict):
            raise Malformed("run has no tool.driver object")
        self.tool = str(driver.get("name") or "").strip()
        if not self.tool:
            raise Malformed("run has no tool.driver.name")
        extensions = tool.get("extensions") or []
        self.components = [driver] + [e for e in extensions if isinstance(e, dict)]
        self.rules_by_id: dict[str, dict] = {}
        for comp in self.components:
            for rule in comp.get("rules") or []:
                if isinstance(rule, dict) and rule.get("id"):
                    self.rules_by_id.setdefault(str(rule["id"]), rule)
        repo = None
        if isinstance(provenance, list):
            for vcp in provenance:
                if isinstance(vcp, dict) and vcp.get("repositoryUri"):
                    repo = repository_name(vcp["repositoryUri"])
                    break
        if repo and repository and repo != repository:
            raise Malformed(f"the log names repository {repo!r}, --repository {repository!r}: "
                            "leave --repository out or give the same")
        self.repo = repo or repository or (f"sarif:{self.tool}:{source}" if source
                                           else f"sarif:{self.tool}")
        self.artifacts = artifacts if isinstance(artifacts, list) else []

    def rule(self, result: dict) -> tuple[str, dict | None]:
        ref = result.get("rule") if isinstance(result.get("rule"), dict) else {}
        comp = self.components[0]
        tc = ref.get("toolComponent")
        ext = tc.get("index") if isinstance(tc, dict) else None
        if isinstance(ext, int) and 0 <= ext < len(self.components) - 1:
            comp = self.components[ext + 1]
        index = result.get("ruleIndex", ref.get("index"))
        rule = None
        rules = comp.get("rules") or []
        if isinstance(index, int) and 0 <= index < len(rules) and isinstance(rules[index], dict):
            rule = rules[index]
        rule_id = result.get("ruleId") or ref.get("id") or (rule or {}).get("id")
        if not rule_id:
            raise Malformed(
                "result names no rule (no ruleId, rule.id, or ruleIndex of a known rule)")
        rule_id = str(rule_id)
        if rule is None:
            rule = self.rules_by_id.get(rule_id)
            if rule is None and "/" in rule_id:  # hierarchical id "A/B": the rule is "A"
                rule = self.rules_by_id.get(rule_id.split("/", 1)[0])
        return rule_id, rule

    def fill(self, rec: Record, result: Any) -> None:
        if not isinstance(result, dict):
            raise Malformed(f"expected a result object, got {type(result).__name__}")
        rule_id, rule = self.rule(result)
        rule = rule or {}
        rprops = rule.get("properties") if isinstance(rule.get("properties"), dict) else {}
        props_r = result.get("properties") if isinstance(result.get("properties"), dict) else {}

        repo = rec.add("asset", identifier=self.repo, group=self.repo, **{"class": "repository"})
        locations = [loc for loc in (result.get("locations") or []) if isinstance(loc, dict)]
        evidence: list[str] = []
        target = repo
        for n, loc in enumerate(locations):
            path, line = self.location(loc, n)
            if path is None:
                continue
            evidence.append(f"{path}:{line}" if line else path)
            if target == repo and n == 0:
                ident = f"{self.repo}/{path}"
                target = rec.add("asset", identifier=ident, group=_group(ident),
                                 **{"class": "repository"})
                rec.link("DEPENDS_ON", repo, target)
        for member in ("partialFingerprints", "fingerprints"):
            fps = result.get(member)
            if isinstance(fps, dict):
                evidence.extend(f"fingerprint {k}={v}" for k, v in sorted(fps.items()) if v)

        sec = props_r.get("security-severity", rprops.get("security-severity"))
        severity = _from_security_severity(sec)
        if severity is None:
            level = result.get("level")
            if level is None:
                default = rule.get("defaultConfiguration")
                level = default.get("level") if isinstance(default, dict) else None
            level = str(level or "warning").strip().lower()
            if level not in _LEVELS:
                raise Malformed(f"unknown level {level!r} (expected error, warning, note or none)")
            severity = _LEVELS[level]

        tags = [str(t) for t in (rprops.get("tags") or []) if isinstance(t, (str, int))]
        cwes = []
        cwe_prop = rprops.get("cwe")
        cwe_texts = cwe_prop if isinstance(cwe_prop, list) else [cwe_prop] if cwe_prop else []
        for text in tags + cwe_texts:
            for num in _CWE.findall(str(text)):
                cwes.append(f"CWE-{num}")
        short = _text(rule.get("shortDescription"))
        props: dict[str, Any] = {"tool": self.tool}
        if sec not in (None, ""):
            props["security_severity"] = str(sec)
        if tags:
            props["tags"] = tags
        if cwes:
            props["cwe"] = list(dict.fromkeys(cwes))
        if short:
            props["rule_description"] = _oneline(short)[:1000]
        title = (self.message(result.get("message"), rule) or short
                 or _text(rule.get("fullDescription")) or rule_id)
        rec.finding(target, rule_id, severity=severity, title=_oneline(title), evidence=evidence,
                    properties=props)

    def location(self, loc: dict, n: int) -> tuple[str | None, int | None]:
        phys = loc.get("physicalLocation")
        if not isinstance(phys, dict):
            return None, None  # a logical-only location
        art = phys.get("artifactLocation")
        if not isinstance(art, dict):
            raise Malformed(f"locations[{n}].physicalLocation has no artifactLocation")
        uri = art.get("uri")
        index = art.get("index")
        if not uri and isinstance(index, int) and 0 <= index < len(self.artifacts):
            known = self.artifacts[index]
            if isinstance(known, dict) and isinstance(known.get("location"), dict):
                uri = known["location"].get("uri")
        if not uri:
            raise Malformed(f"locations[{n}].physicalLocation.artifactLocation has no uri "
                            "(nor an index of a run artifact with one)")
        region = phys.get("region")
        line = region.get("startLine") if isinstance(region, dict) else None
        if line is not None and (not isinstance(line, (int, float)) or line < 1):
            raise Malformed(f"locations[{n}] region.startLine {line!r} is not a line number")
        return _path(str(uri)), int(line) if line is not None else None

    def message(self, message: Any, rule: dict) -> str | None:
        if not isinstance(message, dict):
            return None
        text = message.get("text")
        if text:
            return str(text)
        mid = message.get("id")
        if not mid:
            return None
        strings = rule.get("messageStrings") if isinstance(rule.get("messageStrings"), dict) else {}
        template = _text(strings.get(mid))
        if template is None:
            for comp in self.components:  # a tool-wide message string (globalMessageStrings)
                glob = comp.get("globalMessageStrings")
                if isinstance(glob, dict) and _text(glob.get(mid)):
                    template = _text(glob.get(mid))
                    break
        if template is None:
            return None
        args = message.get("arguments") or []
        return _PLACEHOLDER.sub(
            lambda m: str(args[int(m.group(1))]) if int(m.group(1)) < len(args) else m.group(0),
            template)


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _text(value: Any) -> str | None:
    if isinstance(value, dict) and value.get("text"):
        return str(value["text"]).strip() or None
    return None


def _from_security_severity(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise Malformed(f"security-severity {value!r} is not a number") from None
    if not 0 <= score <= 10:
        raise Malformed(f"security-severity {score} is outside 0-10")
    return ("critical" if score >= 9 else "high" if score >= 7 else "medium" if score >= 4
            else "low" if score > 0 else "info")


def _path(uri: str) -> str:
    if uri.lower().startswith("file:"):
        uri = urlsplit(uri).path
    path = posixpath.normpath(unquote(uri.replace("\\", "/")))
    path = path.lstrip("/")
    if path in ("", "."):
        raise Malformed(f"artifact uri {uri!r} names no file")
    return path


def _group(identifier: str) -> str:
    if len(identifier) <= _MAX_GROUP:
        return identifier
    digest = hashlib.sha256(identifier.lower().encode()).hexdigest()[:16]
    return f"{identifier[:240]}…{digest}"
