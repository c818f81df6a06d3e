"""Domain errors. Each carries the HTTP status the API answers with, so routes never translate by hand."""

from __future__ import annotations

from typing import Any, ClassVar


class CtaxError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return body


class InvalidInput(CtaxError):
    status_code = 422
    code = "invalid_input"


class NotFound(CtaxError):
    status_code = 404
    code = "not_found"


class Conflict(CtaxError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(CtaxError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(CtaxError):
    status_code = 415
    code = "unsupported_media_type"


class Unauthorized(CtaxError):
    status_code = 401
    code = "unauthorized"


class Forbidden(CtaxError):
    status_code = 403
    code = "forbidden"


class AccountSuspended(Forbidden):
    """The key is valid, but an admin suspended its account (resuming it makes the key work again)."""

    code = "account_suspended"


class QuotaExceeded(Forbidden):
    """The account holds as many creatives as its quota allows: deleting some, or a larger quota, makes room."""

    code = "quota_exceeded"


class ServiceUnavailable(CtaxError):
    status_code = 503
    code = "unavailable"


class IndexLocked(ServiceUnavailable):
    """Local-mode Qdrant lets one process open its folder; a second one must use a Qdrant server."""

    code = "index_locked"


class ConcurrentChange(Conflict):
    """Another transaction changed the same rows first (a unique key, an optimistic version): nothing was stored."""

    code = "concurrent_change"


class StoreUnavailable(ServiceUnavailable):
    """The database could not be reached or stayed locked too long; the request changed nothing."""

    code = "database_unavailable"


class StoreBusy(StoreUnavailable):
    """A lock another transaction holds was not granted within CTAX_DATABASE_LOCK_WAIT_S: it usually passes."""

    code = "database_busy"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class SchemaOutOfDate(StoreUnavailable):
    """The database has no ctax schema, or an older one than this code (`ctax db upgrade` migrates it)."""

    code = "database_schema_out_of_date"


# What refuses a request for what it sent (not an account's quota, not the service's state).
REFUSED_FOR_CONTENT = (InvalidInput, PayloadTooLarge, UnsupportedMediaType, Conflict)
