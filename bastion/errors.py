"""Errors a user can cause. The CLI prints them as one line; anything else is a bug."""

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


class ConflictError(BastionError):
    """An update expected a version that is no longer current; nothing was written."""

    exit_code = 3


class NotFound(BastionError):
    """No such entity, tenant or revision."""

    exit_code = 4


class ConfigError(BastionError):
    """A bad database URL, home directory or option."""


class LossyDowngrade(BastionError):
    """A schema downgrade would destroy data and was not forced; nothing was changed."""

    exit_code = 7

    def __init__(self, message: str, losses: list):
        super().__init__(message)
        self.losses = losses
