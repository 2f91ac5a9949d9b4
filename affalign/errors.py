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
