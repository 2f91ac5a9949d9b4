"""Exceptions that map to the CLI's exit codes."""


class AffalignError(Exception):
    """Base class of the errors affalign reports without a traceback."""

    exit_code = 1


class InputError(AffalignError):
    """Invalid input data: an unreadable file or a missing column. Exit code 2."""

    exit_code = 2


class ConfigError(AffalignError):
    """Invalid job config, taxonomy or CLI option. Exit code 2."""

    exit_code = 2


class BudgetExceeded(AffalignError):
    """A configured request, token or dollar budget would be exceeded."""

    exit_code = 1


def unwrap_error(exc: BaseException) -> BaseException:
    """The affalign error inside a Ray task error, if any (so bad input still exits 2)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, InputError):
            return cur
        cause = getattr(cur, "cause", None) or cur.__cause__
        cur = cause
        seen += 1
    return exc
