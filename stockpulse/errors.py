"""One exception family for the project.

Entry points catch :class:`StockPulseError` and print its message as one line (exit code 2 for
bad input or configuration), so users see what to do instead of a traceback.
"""


class StockPulseError(Exception):
    """An error the user can act on; its message says what went wrong and what to do."""


class ConfigError(StockPulseError):
    """A setting (environment variable or flag) has a value the project cannot use."""


class InputError(StockPulseError):
    """An input file is missing or is not in the expected format."""


class ServiceError(StockPulseError):
    """An external service (PostgreSQL, the broker) is unreachable or failed to start."""


class ServiceUnavailable(ServiceError):
    """The service did not answer (refused, down, restarting): worth retrying, unlike a bad URL."""
