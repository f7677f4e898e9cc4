"""Errors that map to a clear HTTP answer. Anything else is a 500 with no detail."""

from __future__ import annotations


class ThreadlineError(Exception):
    """An error with an HTTP status and a stable, machine-readable code."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class MalformedRequest(ThreadlineError):
    status = 400
    code = "malformed_request"


class SignatureInvalid(ThreadlineError):
    status = 403
    code = "invalid_signature"


class NotFound(ThreadlineError):
    status = 404
    code = "not_found"


class PayloadTooLarge(ThreadlineError):
    status = 413
    code = "payload_too_large"


class StorageUnavailable(ThreadlineError):
    """The message could not be stored durably; the provider should retry."""

    status = 503
    code = "storage_unavailable"


class Conflict(ThreadlineError):
    """The request collides with the state of the data (409), with what it collided with."""

    status = 409
    code = "conflict"

    def __init__(self, message: str, *, code: str | None = None, details: object = None) -> None:
        super().__init__(message, code=code)
        self.details = details
