"""Exceptions users may see: each carries a one-line message saying what is wrong and what to do.

`main.py` catches `HyperfluxError` once and prints its message without a traceback.
"""


class HyperfluxError(Exception):
    """Base of every expected failure; `str(err)` is the one line shown to the user."""


class ConfigError(HyperfluxError):
    """A configuration key has a value that is not allowed."""


class InfluxUnavailableError(HyperfluxError):
    """InfluxDB cannot be reached, or no local server can be started."""


class InfluxQueryError(HyperfluxError):
    """InfluxDB refused a query, or a named query was asked for with bad parameters."""
