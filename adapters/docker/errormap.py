"""Docker's failures in pycrid's error vocabulary, decided here and nowhere else.

dockerd answers every failed call with an HTTP status code, which is what
decides the error; its message is only passed on. The table:

=========================  ===========================================
what happened              CRI error
=========================  ===========================================
400                        InvalidArgument
401, 403                   FailedPrecondition (the CRI has no PERMISSION_DENIED)
404                        NotFound
409                        the call's own meaning (``CONFLICTS``):
                           FailedPrecondition (a container's state forbids
                           it; the default) or AlreadyExists (a name is taken)
other 4xx                  FailedPrecondition
5xx                        the call's own meaning (``SERVER_ERRORS``): Internal
                           (the default), Unavailable (a pull: the registry
                           failed or cannot be reached), InvalidArgument (a
                           create: the config), FailedPrecondition (a start:
                           the container cannot start as configured)
timed out                  DeadlineExceeded
cannot connect             Unavailable
=========================  ===========================================

One failure carries no status code: an error inside a pull's progress
stream, which arrives after ``200 OK``; only its text can tell what it was
(``pull_stream_error``).
"""

from __future__ import annotations

import urllib3.exceptions

from pycrid.adapters import errors
from pycrid.adapters.docker.sdk import docker, requests

ErrorKind = type[errors.CRIError]

CONFLICTS: dict[str, ErrorKind] = {"create_container": errors.AlreadyExists}
"""The ``DockerApi`` calls whose 409 means a taken name, not a forbidding state."""

SERVER_ERRORS: dict[str, ErrorKind] = {
    "pull_image": errors.Unavailable,
    "create_container": errors.FailedPrecondition,
    "start_container": errors.FailedPrecondition,
}
"""The ``DockerApi`` calls whose 5xx has a meaning of its own.

A pull's means that what dockerd depends on (the registry) failed. A
create's or a start's means that this container cannot be made or run on
this node as it stands: dockerd answers 500 alike for a config the image or
the host cannot take (a working directory that is a file in the image, a
mount runc cannot make) and for a full disk; Docker's message says which.
"""


def error_for_status(status: int, message: str, call: str = "") -> errors.CRIError:
    """The CRI error for the ``DockerApi`` call ``call`` that dockerd answered ``status``."""
    message = message or f"docker answered {status}"
    conflict = CONFLICTS.get(call, errors.FailedPrecondition)
    server_error = SERVER_ERRORS.get(call, errors.Internal)
    if status == 400:
        return errors.InvalidArgument(message)
    if status == 404:
        return errors.NotFound(message)
    if status == 409:
        return conflict(message)
    if 400 <= status < 500:
        return errors.FailedPrecondition(message)
    return server_error(f"docker: {message}")


def map_error(error: Exception, endpoint: str, call: str = "") -> errors.CRIError:
    """The CRI error for what the docker SDK raised in the ``DockerApi`` call ``call``."""
    if isinstance(error, errors.CRIError):
        return error
    if isinstance(error, docker.errors.APIError) and error.status_code is not None:
        return error_for_status(error.status_code, _explanation(error), call)
    if timed_out(error):
        return errors.DeadlineExceeded(f"docker at {endpoint} did not answer in time")
    if _unreachable(error):
        return errors.Unavailable(f"docker is not reachable at {endpoint}")
    return errors.Internal(f"docker: {error}")


def _explanation(error: docker.errors.APIError) -> str:
    """Docker's message for a failed call."""
    text = error.explanation
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text or error)


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what it was raised from (the SDK wraps requests' errors)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def timed_out(error: BaseException) -> bool:
    timeouts = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    return any(isinstance(e, timeouts) for e in _causes(error))


def _unreachable(error: BaseException) -> bool:
    unreachable = (
        requests.exceptions.ConnectionError,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        FileNotFoundError,
    )
    return any(isinstance(e, unreachable) for e in _causes(error))


def pull_stream_error(message: str, repository: str) -> errors.CRIError:
    """An error event inside a pull's progress stream, which has no status code.

    Docker reports a registry's failures there in words only, so the words
    decide: a missing manifest or repository, a refused login, or else a
    registry that failed or cannot be reached.
    """
    lowered = message.lower()
    if any(words in lowered for words in ("not found", "manifest unknown", "does not exist")):
        return errors.NotFound(f"{repository}: {message}")
    if any(words in lowered for words in ("unauthorized", "denied", "authentication")):
        return errors.FailedPrecondition(f"{repository}: access denied: {message}")
    return errors.Unavailable(f"{repository}: {message}")
