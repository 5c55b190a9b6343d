"""How a registry request can fail, as the registry client reports it.

The puller turns these into the server's error vocabulary; what matters there
is which failures are worth another endpoint or another attempt.
"""

from __future__ import annotations

# HTTP answers that mean "try again later".
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class RegistryError(Exception):
    """A registry request failed; the message names the endpoint."""


class Unauthorized(RegistryError):
    """The registry (or its token service) refused us, or wants credentials we lack."""


class Missing(RegistryError):
    """The registry does not have the manifest or blob."""


class Transient(RegistryError):
    """A failure worth retrying: the connection broke, the registry is busy."""


class Stalled(RegistryError):
    """No byte arrived for the progress timeout."""


class Corrupt(RegistryError):
    """Content did not match its digest or size."""
