"""Throwaway PostgreSQL clusters for the test suite.

Stdlib only at import time, so ``scripts/ensure-postgres`` can run this file with any
``python3`` (``python3 tests/pg_cluster.py bindir``) before the venv's packages matter.

Public API:

- ``PostgresUnavailable`` -- raised when no PostgreSQL can be found or started.
- ``find_pg_bindir()`` -- directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.
- ``ThrowawayCluster`` -- ``with ThrowawayCluster() as url:`` runs a private server on
  127.0.0.1 and yields a ``postgresql+psycopg://`` URL; everything is deleted on exit.
- ``test_database_url()`` -- context manager yielding ``$BASTION_TEST_DATABASE_URL`` if set,
  else a ThrowawayCluster URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PostgresUnavailable", "ThrowawayCluster", "find_pg_bindir", "test_database_url"]

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
URL_ENV = "BASTION_TEST_DATABASE_URL"
BINDIR_ENV = "BASTION_PG_BINDIR"
# Used only when running as root and no `postgres` OS user exists.
FALLBACK_OS_USER = "bastion-pg"

_INITDB_TIMEOUT = 180
_START_TIMEOUT = 60
_START_ATTEMPTS = 3  # the free port can be taken between probing and binding


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is required here but no server could be found or started."""

    def __init__(
        self,
        message: str = (
            "PostgreSQL is not available: install the distribution's postgresql package "
            f"or set {URL_ENV}"
        ),
    ) -> None:
        super().__init__(message)


# --------------------------------------------------------------------------- binaries


def _is_server_bindir(path: str | None) -> bool:
    return bool(path) and all(
        os.access(os.path.join(path, name), os.X_OK) for name in SERVER_BINARIES
    )


def _version_key(bindir: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin; "9.6" must sort below "15".
    version = Path(bindir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (-1,)


def _pg_config_bindir() -> str | None:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _candidates() -> list[tuple[str, str | None]]:
    """(description, directory) pairs in search order; directory None when not applicable."""
    explicit = os.environ.get(BINDIR_ENV)
    if explicit:
        # An explicit choice is final: silently falling back to another version would hide
        # a misconfiguration.
        return [(f"${BINDIR_ENV}={explicit}", explicit)]

    found: list[tuple[str, str | None]] = []
    bindir = _pg_config_bindir()
    found.append((f"pg_config --bindir ({bindir or 'no pg_config'})", bindir))
    # Debian's pg_wrapper and /usr/local symlinks point elsewhere; the real directory is
    # the one that also holds pg_ctl and postgres.
    initdb = shutil.which("initdb")
    path_dir = os.path.dirname(os.path.realpath(initdb)) if initdb else None
    found.append((f"PATH ({path_dir or 'no initdb'})", path_dir))
    for versioned in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        found.append((versioned, versioned))
    if not any(desc.startswith("/usr/lib/postgresql/") for desc, _ in found):
        found.append(("/usr/lib/postgresql/*/bin (none)", None))
    return found


def _searched_locations() -> str:
    return ", ".join(desc for desc, _ in _candidates())


def find_pg_bindir() -> str | None:
    """Return a directory containing initdb, pg_ctl and postgres, or None."""
    for _, path in _candidates():
        if _is_server_bindir(path):
            return os.path.realpath(path)
    return None


def _no_binaries_message() -> str:
    return (
        f"no PostgreSQL binaries found (looked in {_searched_locations()}); install the "
        f"distribution's postgresql package or set {URL_ENV}"
    )


# --------------------------------------------------------------------------- running as root


def _ensure_os_user() -> pwd.struct_passwd:
    """An unprivileged account to own the cluster: initdb and postgres refuse to run as root."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("postgres")
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(FALLBACK_OS_USER)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    # Parallel test workers may race to create the account; serialize them.
    with open(os.path.join(tempfile.gettempdir(), "bastion-useradd.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(FALLBACK_OS_USER)
        try:
            subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 FALLBACK_OS_USER],
                capture_output=True, text=True, timeout=30, check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            raise PostgresUnavailable(
                "running as root, and initdb/postgres refuse to run as root; there is no "
                f"'postgres' OS user and creating '{FALLBACK_OS_USER}' failed: "
                f"{detail.strip()}. Create an unprivileged user or set {URL_ENV}"
            ) from exc
    return pwd.getpwnam(FALLBACK_OS_USER)


def _run_as_prefix(user: pwd.struct_passwd) -> list[str]:
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"]
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    raise PostgresUnavailable(
        "running as root, and initdb/postgres refuse to run as root, but neither runuser nor "
        f"setpriv is available to drop privileges; run the tests as a normal user or set {URL_ENV}"
    )


def _traversable_by_others(path: str) -> bool:
    p = Path(path).resolve()
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in [p, *p.parents])


# --------------------------------------------------------------------------- cluster


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class ThrowawayCluster:
    """A private PostgreSQL server in a temp dir, for the lifetime of a ``with`` block.

    Tuned for speed, not durability (fsync off, ``pg_ctl -m immediate stop``). Attributes
    ``url``, ``port``, ``workdir`` and ``log_path`` are set while the cluster runs.
    """

    def __init__(self, bindir: str | None = None) -> None:
        self.bindir = bindir
        self.url: str | None = None
        self.port: int | None = None
        self.workdir: str | None = None
        self.log_path: str | None = None
        self._prefix: list[str] = []

    # -- helpers

    def _bin(self, name: str) -> str:
        assert self.bindir is not None
        return os.path.join(self.bindir, name)

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        # Run from the work dir: the unprivileged user may be unable to enter the caller's
        # cwd (e.g. /root), which initdb rejects.
        return subprocess.run(
            [*self._prefix, *args], cwd=self.workdir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
        )

    def _server_log(self, since: int = 0) -> str:
        """Tail of the server log, from byte offset ``since`` (to skip earlier attempts)."""
        try:
            with open(self.log_path or "", "rb") as f:
                f.seek(since)
                return _tail(f.read().decode(errors="replace"))
        except OSError:
            return ""

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path or "")
        except OSError:
            return 0

    # -- lifecycle

    def __enter__(self) -> str:
        if self.bindir is None:
            self.bindir = find_pg_bindir()
            if self.bindir is None:
                raise PostgresUnavailable(_no_binaries_message())
        elif not _is_server_bindir(self.bindir):
            raise PostgresUnavailable(
                f"{self.bindir} does not contain initdb, pg_ctl and postgres"
            )
        try:
            self._setup()
            self._initdb()
            self._start()
        except BaseException:
            self._teardown()
            raise
        return self.url  # type: ignore[return-value]

    def __exit__(self, *exc_info: object) -> None:
        self._teardown()

    def _setup(self) -> None:
        base = tempfile.gettempdir()
        owner = None
        if os.geteuid() == 0:
            owner = _ensure_os_user()
            self._prefix = _run_as_prefix(owner)
            # The unprivileged owner must be able to reach its data directory.
            if not _traversable_by_others(base):
                base = "/tmp"
        # Short names: the Unix socket path must stay under ~100 bytes.
        self.workdir = tempfile.mkdtemp(prefix="bastion-pg-", dir=base)
        os.chmod(self.workdir, 0o755)
        os.mkdir(os.path.join(self.workdir, "sock"), 0o700)
        if owner is not None:
            for path in (self.workdir, os.path.join(self.workdir, "sock")):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self.log_path = os.path.join(self.workdir, "server.log")

    def _initdb(self) -> None:
        assert self.workdir is not None
        args = [
            self._bin("initdb"), "-D", os.path.join(self.workdir, "data"),
            "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C",
        ]
        try:
            proc = self._run(args, timeout=_INITDB_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise PostgresUnavailable(f"initdb timed out after {_INITDB_TIMEOUT}s") from exc
        if proc.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed (exit {proc.returncode}):\n{_tail(proc.stdout)}"
            )

    def _start(self) -> None:
        assert self.workdir is not None
        sockdir = os.path.join(self.workdir, "sock")
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            log_offset = self._log_size()
            options = " ".join([
                f"-p {port}", f"-k {shlex.quote(sockdir)}",
                "-c listen_addresses=127.0.0.1", "-c fsync=off", "-c synchronous_commit=off",
                "-c full_page_writes=off", "-c max_connections=100",
            ])
            args = [
                self._bin("pg_ctl"), "-D", os.path.join(self.workdir, "data"),
                "-l", self.log_path, "-w", "-t", str(_START_TIMEOUT), "-o", options, "start",
            ]
            try:
                proc = self._run(args, timeout=_START_TIMEOUT + 15)
            except subprocess.TimeoutExpired:
                proc = None
            if proc is not None and proc.returncode == 0:
                self.port = port
                self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
                return
            log = self._server_log(since=log_offset)
            self._stop()  # a timed-out server may still be coming up
            if "could not bind" in log and attempt < _START_ATTEMPTS:
                continue
            output = (
                _tail(proc.stdout) if proc is not None else f"timed out after {_START_TIMEOUT}s"
            )
            raise PostgresUnavailable(
                f"PostgreSQL server failed to start on port {port}:\n{output}\n"
                f"--- tail of server log ---\n{log}"
            )

    def _stop(self) -> None:
        if self.workdir and os.path.exists(os.path.join(self.workdir, "data", "postmaster.pid")):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run(
                    [self._bin("pg_ctl"), "-D", os.path.join(self.workdir, "data"),
                     "-m", "immediate", "-w", "stop"],
                    timeout=60,
                )

    def _teardown(self) -> None:
        self._stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.url = self.port = self.workdir = self.log_path = None


# --------------------------------------------------------------------------- entry point


def _normalize_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        got = f"{scheme}://" if sep else "a URL without a scheme"
        raise PostgresUnavailable(
            f"{URL_ENV} must be a postgresql:// or postgresql+psycopg:// URL, not {got}"
        )
    return f"postgresql+psycopg://{rest}"


@contextlib.contextmanager
def test_database_url() -> Iterator[str]:
    """Yield a PostgreSQL URL for tests: $BASTION_TEST_DATABASE_URL, else a throwaway cluster."""
    configured = os.environ.get(URL_ENV)
    if configured:
        yield _normalize_url(configured)
        return
    with ThrowawayCluster() as url:
        yield url


# Keep pytest from collecting this as a test if a test module imports it by name.
test_database_url.__test__ = False  # type: ignore[attr-defined]


if __name__ == "__main__":
    # `python3 tests/pg_cluster.py bindir` -- used by scripts/ensure-postgres.
    if sys.argv[1:] != ["bindir"]:
        sys.exit(f"usage: {sys.argv[0]} bindir")
    found = find_pg_bindir()
    if found is None:
        sys.exit(_no_binaries_message())
    print(found)
