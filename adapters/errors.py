"""The error vocabulary shared by the server and every adapter.

Adapters raise these; the server maps them to gRPC status codes in one place
(the server's instrument module). Anything else that escapes an adapter is a bug
and is answered INTERNAL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class CRIError(Exception):
    """Base of the errors a CRI call may answer with."""


class NotFound(CRIError):
    """The object named by the request does not exist."""


class InvalidArgument(CRIError):
    """The request is malformed or names something ambiguously."""


class AlreadyExists(CRIError):
    """An object with the same identity already exists."""


class FailedPrecondition(CRIError):
    """The object is in a state that does not allow the call."""


class Unavailable(CRIError):
    """The backend (dockerd, runc, a registry) cannot be reached right now."""


class DeadlineExceeded(CRIError):
    """The call, or the command it ran, outlived its deadline."""


class ResourceExhausted(CRIError):
    """A bounded resource (pending sessions, output size) is used up."""


class Unimplemented(CRIError):
    """The adapter does not support this call."""


class Internal(CRIError):
    """A failure of the backend that is none of the above."""


@contextlib.contextmanager
def backend_failure(what: str) -> Iterator[None]:
    """Put pycrid's words (``what`` failed) before a backend's own in an Internal error."""
    try:
        yield
    except Internal as e:
        raise Internal(f"{what}: {e}") from e
