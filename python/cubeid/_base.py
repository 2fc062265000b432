"""What every provider shares: a token cache refreshed ahead of expiry under
one lock, the requests.auth.AuthBase hook with a single re-authentication on
a 401, and the token endpoint POST with its error mapping."""

import base64
import json
import threading
import time
from typing import Optional, Protocol, Tuple, runtime_checkable

import requests
import requests.auth

from .errors import KeycloakUnreachableError, TokenRequestRefused

#: refresh this long before a token expires, at most half its lifetime
DEFAULT_MARGIN = 30.0
#: (connect, read) seconds for the token endpoint, as AgentCube's SDK
DEFAULT_TIMEOUT = (5.0, 30.0)
#: the lifetime assumed when a token reply has no expires_in
DEFAULT_EXPIRES_IN = 300


@runtime_checkable
class AuthProvider(Protocol):
    """AgentCube's AuthProvider protocol (agentcube/auth.py)."""

    def get_token(self) -> str: ...


class _BearerAuth(requests.auth.AuthBase):
    """A requests auth that sets `Authorization: Bearer <get_token()>`."""

    def get_token(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, r):
        r.headers["Authorization"] = "Bearer " + self.get_token()
        return r


class _RefreshingAuth(_BearerAuth):
    """A token cache: get_token() returns the cached token until `margin`
    seconds (at most half its lifetime) before it expires, then fetches a
    new one.  One lock covers the check and the fetch, so any number of
    threads at expiry cause exactly one token request; the others wait for
    it and get the same token.

    As a requests auth it also re-authenticates once on a 401: the request
    is sent again with a new token, and a second 401 is returned as is."""

    def __init__(self, margin: float = DEFAULT_MARGIN):
        if margin < 0:
            raise ValueError("margin must be >= 0")
        self._margin = float(margin)
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._refresh_at = 0.0

    # Subclasses: return (access_token, expires_in seconds); called with the
    # lock held.
    def _fetch_locked(self) -> Tuple[str, float]:  # pragma: no cover
        raise NotImplementedError

    def get_token(self) -> str:
        with self._lock:
            if self._token is not None and time.monotonic() < self._refresh_at:
                return self._token
            token, expires_in = self._fetch_locked()
            now = time.monotonic()
            self._token = token
            self._refresh_at = now + expires_in - min(self._margin, expires_in / 2.0)
            return token

    def invalidate(self, token: Optional[str] = None) -> None:
        """Forget the cached token, so that the next get_token() fetches a
        new one.  With `token`, only if that is still the cached one: many
        callers that saw the same rejected token cause one refresh."""
        with self._lock:
            if token is None or token == self._token:
                self._token = None

    def __call__(self, r):
        r.headers["Authorization"] = "Bearer " + self.get_token()
        r.register_hook("response", self._retry_on_401)
        return r

    def _retry_on_401(self, resp, **kwargs):
        req = resp.request
        if resp.status_code != 401 or getattr(req, "_cubeid_reauth", False):
            return resp
        if not _rewindable(req.body):
            return resp
        sent = req.headers.get("Authorization", "")[len("Bearer "):]
        self.invalidate(sent)
        token = self.get_token()
        resp.content  # read the body, so the connection can be reused
        resp.close()
        retry = req.copy()
        retry.headers["Authorization"] = "Bearer " + token
        # the retry goes straight to the adapter (no response hooks); the
        # mark keeps a redirect of it from being retried again
        retry._cubeid_reauth = True
        again = resp.connection.send(retry, **kwargs)
        again.history.append(resp)
        again.request = retry
        return again


def _rewindable(body) -> bool:
    return body is None or isinstance(body, (bytes, str))


def token_issuer(token_url: str) -> str:
    """The realm issuer of a Keycloak token endpoint URL:
    https://kc/realms/R/protocol/openid-connect/token -> https://kc/realms/R"""
    suffix = "/protocol/openid-connect/token"
    if not token_url.endswith(suffix):
        raise ValueError(
            "cannot tell the realm issuer from token_url %r (not a Keycloak "
            "token endpoint .../realms/REALM%s): pass audience=" % (token_url, suffix))
    return token_url[: -len(suffix)]


def post_token(token_url: str, form: dict, timeout, headers: Optional[dict] = None) -> Tuple[str, float]:
    """POST `form` to the token endpoint; return (access_token, expires_in).
    Never puts the form (it holds credentials) in an error message."""
    try:
        resp = requests.post(token_url, data=form, headers=headers or {}, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise KeycloakUnreachableError(
            "cannot reach the token endpoint %s: %s. Check the URL, and that "
            "Keycloak is up and reachable from here" % (token_url, type(e).__name__)) from e
    body = None
    try:
        body = resp.json()
    except ValueError:
        pass
    if resp.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        error = body.get("error") if isinstance(body, dict) else None
        desc = body.get("error_description") if isinstance(body, dict) else None
        if error:
            what = "%s: %s" % (error, desc) if desc else str(error)
        elif resp.status_code == 200:
            what = "a reply without access_token"
        else:
            what = "no OAuth error in the reply"
        raise TokenRequestRefused(
            "the token endpoint %s refused the request (HTTP %d): %s"
            % (token_url, resp.status_code, what),
            status=resp.status_code, error=error, error_description=desc, response=resp)
    try:
        expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN
    if expires_in <= 0:
        expires_in = 0.0
    return body["access_token"], expires_in


def jwt_claims(token: str) -> dict:
    """The payload of a JWT, NOT verified: for reading azp and exp of a
    token this process just received from the token endpoint."""
    try:
        p = token.split(".")[1]
        p += "=" * (-len(p) % 4)
        c = json.loads(base64.urlsafe_b64decode(p.encode("ascii")))
        return c if isinstance(c, dict) else {}
    except (IndexError, ValueError, UnicodeError):
        return {}
