"""Domain errors with the gRPC status each one means, mapped to statuses in one place."""

from __future__ import annotations

from collections.abc import Mapping

import grpc


class DomainError(Exception):
    """A failure the caller can understand; its message is safe to show."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(DomainError):
    """A field of the request is wrong; the message starts with the field's name."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class NotFound(DomainError):
    """The named entity does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(DomainError):
    """The entity is not in a state that allows the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(DomainError):
    """The entity exists already with other content."""

    code = grpc.StatusCode.ALREADY_EXISTS


class Unavailable(DomainError):
    """A dependency does not answer; the call may succeed later."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(DomainError):
    """A limit of the caller is used up; it may try again after retry_after seconds."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self, message: str, *, limit: str, subject: str, retry_after: float, details: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.subject = subject
        self.retry_after = retry_after
        # Numbers about the limit (a quota's max, current and requested), for the client.
        self.details = dict(details or {})


class Unauthenticated(DomainError):
    """The call carries no credential, or one nobody issued."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    """The caller's key may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED
