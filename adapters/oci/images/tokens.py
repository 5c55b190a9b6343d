"""Answering a registry's authentication challenge.

A 401 names what the registry wants in its WWW-Authenticate header: a bearer
token from a token service (Docker's token protocol: basic auth to the realm,
or an OAuth2 refresh-token grant when the credentials are an identity token),
or basic auth to the registry itself.
"""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp

from pycrid.adapters.oci.images.auth import Challenge, Credentials, parse_challenges
from pycrid.adapters.oci.images.endpoints import Endpoint
from pycrid.adapters.oci.images.failures import (
    TRANSIENT_STATUS,
    RegistryError,
    Stalled,
    Transient,
    Unauthorized,
)

DEFAULT_TOKEN_LIFETIME = 60.0
BASIC_LIFETIME = 3600.0


def refusal(endpoint: Endpoint, repository: str, credentials: Credentials) -> str:
    """The message for a registry that will not let us pull: it names the registry."""
    if credentials:
        return f"registry {endpoint.host} refused the credentials given for {repository}"
    return f"registry {endpoint.host} requires credentials for {repository} and none were given"


async def authorization(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    repository: str,
    credentials: Credentials,
    header: str,
) -> tuple[str, float]:
    """(Authorization header value, seconds it may be reused) answering ``header``."""
    challenges = {c.scheme: c for c in parse_challenges(header)}
    if "bearer" in challenges:
        if credentials.registry_token:
            return f"Bearer {credentials.registry_token}", DEFAULT_TOKEN_LIFETIME
        return await _fetch_token(session, endpoint, repository, credentials, challenges["bearer"])
    if "basic" in challenges and credentials.username:
        return credentials.basic(), BASIC_LIFETIME
    raise Unauthorized(refusal(endpoint, repository, credentials))


async def _fetch_token(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    repository: str,
    credentials: Credentials,
    challenge: Challenge,
) -> tuple[str, float]:
    realm = challenge.params.get("realm", "")
    if not realm or not endpoint.allows(realm):
        raise Unauthorized(
            f"registry {endpoint.host} sent an unusable token realm {realm!r} "
            "(it must be HTTPS unless the registry is loopback or insecure)"
        )
    scopes = [f"repository:{repository}:pull"]
    if challenge.params.get("scope") and challenge.params["scope"] not in scopes:
        scopes.append(challenge.params["scope"])
    query: list[tuple[str, str]] = [("scope", s) for s in scopes]
    if challenge.params.get("service"):
        query.insert(0, ("service", challenge.params["service"]))
    headers: dict[str, str] = {}
    method, body = "GET", None
    if credentials.identity_token:
        method = "POST"
        body = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.identity_token,
            "client_id": "pycrid",
            "service": challenge.params.get("service", ""),
            "scope": " ".join(scopes),
        }
    elif credentials.username:
        headers["Authorization"] = credentials.basic()
    url = realm + ("&" if "?" in realm else "?") + urlencode(query)
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            data=body,
            ssl=endpoint.verifies_tls_for(url),
            allow_redirects=False,
        ) as response:
            if response.status in (401, 403):
                raise Unauthorized(
                    refusal(endpoint, repository, credentials)
                    + f" (token service answered HTTP {response.status})"
                )
            if response.status != 200:
                failure = Transient if response.status in TRANSIENT_STATUS else RegistryError
                raise failure(f"token service {realm} answered HTTP {response.status}")
            document = await response.json(content_type=None)
    except aiohttp.SocketTimeoutError as e:
        raise Stalled(f"token service {realm}: no answer") from e
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
        raise Transient(f"token service {realm}: {type(e).__name__}: {e}") from e
    if not isinstance(document, dict):
        raise RegistryError(f"token service {realm} answered no JSON object")
    token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token service {realm} returned no token")
    lifetime = document.get("expires_in", DEFAULT_TOKEN_LIFETIME)
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return f"Bearer {token}", float(lifetime)
