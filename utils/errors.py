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


class RpcError(HyperfluxError):
    """The node refused a call or kept failing; `code` is the JSON-RPC error code if any."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        if self.status is not None:
            return self.status == 429 or self.status >= 500
        return "rate limit" in str(self).lower() or "too many requests" in str(self).lower()


class RpcMalformedError(RpcError):
    """A 2xx answer that is not JSON-RPC (quarantined)."""
