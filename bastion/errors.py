"""Errors a user can cause. The CLI prints them as one line; anything else is a bug.

Every exit code of the `bastion` command is here: 0 success, 1 any other user error
(`BastionError`, `ConfigError`, `InvalidValue`), 2 invalid input (`ValidationFailed`,
`Malformed`, `ImportRejected`), 3 `ConflictError`, 4 `NotFound`, 5 `CostExceeded`,
6 `GATE_FAILED` (a CI gate below its threshold: not an error), 7 `LossyDowngrade`, 8 `Busy`
(the tenant's write lock was held past the lock timeout).
"""

from __future__ import annotations


class BastionError(Exception):
    """Base of every error caused by input, configuration or state, never by a bug."""

    exit_code = 1


class InvalidValue(BastionError, ValueError):
    """A value that cannot be normalized (bad IP, DNS name, URL, key …)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class ValidationFailed(BastionError):
    """A batch item failed validation; nothing was written."""

    exit_code = 2

    def __init__(self, problems: list["Problem"]):
        self.problems = problems
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first}{more}")


class Problem:
    """One validation problem: where (item position, kind, field) and why."""

    __slots__ = ("where", "field", "reason")

    def __init__(self, where: str, field: str | None, reason: str):
        self.where, self.field, self.reason = where, field, reason

    def __str__(self) -> str:
        field = f", field '{self.field}'" if self.field else ""
        return f"{self.where}{field}: {self.reason}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"


class Malformed(BastionError):
    """One input record or file cannot be understood; `where` is filled in by the caller."""

    exit_code = 2


class ImportRejected(BastionError):
    """Some inputs of an import were rejected; the summary printed before says which and why."""

    exit_code = 2


class ConflictError(BastionError):
    """An update expected a version that is no longer current; nothing was written."""

    exit_code = 3


class NotFound(BastionError):
    """No such entity, tenant or revision."""

    exit_code = 4


class ConfigError(BastionError):
    """A bad database URL, home directory or option."""


class CostExceeded(BastionError):
    """A graph query refused (before or while running) because it would exceed a limit."""

    exit_code = 5


GATE_FAILED = 6  # `coverage check`: below the threshold (distinct from every error code)


class LossyDowngrade(BastionError):
    """A schema downgrade would destroy data and was not forced; nothing was changed."""

    exit_code = 7

    def __init__(self, message: str, losses: list):
        super().__init__(message)
        self.losses = losses


class Busy(BastionError):
    """Another writer (a running import) held the tenant's write lock for longer than the lock
    timeout (BASTION_LOCK_TIMEOUT); nothing was written. `holder`: the running import, if one
    is known (bastion.store.engine.Holder)."""

    exit_code = 8

    def __init__(self, message: str, holder=None):
        super().__init__(message)
        self.holder = holder
