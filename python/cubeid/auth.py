"""TokenAuth, ServiceAccountAuth and ExchangedTokenAuth: AgentCube's two
classes (agentcube/auth.py), with the same constructor arguments, plus a
client secret file, a refresh margin and a single re-authentication on a
401; and RFC 8693 token exchange of another provider's token."""

import os
import stat
from typing import Dict, Optional, Tuple

from ._base import (
    DEFAULT_MARGIN,
    DEFAULT_TIMEOUT,
    _BearerAuth,
    _RefreshingAuth,
    post_token,
)
from .errors import SecretFileError, TokenRequestRefused

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"

#: a client secret file larger than this is refused
SECRET_FILE_MAX = 64 * 1024


class TokenAuth(_BearerAuth):
    """A static bearer token (AgentCube's TokenAuth).  It cannot be
    refreshed: a 401 is returned to the caller as is."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("Token must not be empty")
        self._token = token

    def get_token(self) -> str:
        return self._token

    def __repr__(self):
        return "TokenAuth(<token>)"


def read_secret_file(path: str) -> str:
    """The client secret in `path` (surrounding white space removed).
    Refused unless only the owner has access to the file (mode 0600 or
    0400), as cubeid's C client refuses it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise SecretFileError("cannot open the client secret file %s: %s" % (path, e.strerror)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretFileError("the client secret file %s is not a regular file" % path)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretFileError(
                "the client secret file %s has mode %04o: group or others have access to it. "
                "Run 'chmod 600 %s' (in Kubernetes, mount the Secret with defaultMode: 0400)"
                % (path, st.st_mode & 0o7777, path))
        if st.st_size > SECRET_FILE_MAX:
            raise SecretFileError("the client secret file %s is larger than %d bytes" % (path, SECRET_FILE_MAX))
        data = os.read(fd, SECRET_FILE_MAX + 1)
    except OSError as e:
        raise SecretFileError("cannot read the client secret file %s: %s" % (path, e.strerror)) from None
    finally:
        os.close(fd)
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretFileError("the client secret file %s is not UTF-8 text" % path) from None
    if not secret:
        raise SecretFileError("the client secret file %s is empty" % path)
    return secret


class _SecretCredentials:
    """client_id plus a secret given directly or read from a file at each
    token request (so a rotated file is picked up)."""

    def __init__(self, client_id, client_secret, client_secret_file):
        if not client_id:
            raise ValueError("client_id must not be empty")
        if (client_secret is None) == (client_secret_file is None):
            raise ValueError("give exactly one of client_secret and client_secret_file")
        if client_secret is not None and not client_secret:
            raise ValueError("client_secret must not be empty")
        self.client_id = client_id
        self._secret = client_secret
        self._file = client_secret_file
        if client_secret_file is not None:
            read_secret_file(client_secret_file)  # refuse a bad file now, not at first use

    def form(self) -> Dict[str, str]:
        secret = self._secret if self._secret is not None else read_secret_file(self._file)
        return {"client_id": self.client_id, "client_secret": secret}


class ServiceAccountAuth(_RefreshingAuth):
    """OAuth2 client_credentials with a client secret (AgentCube's
    ServiceAccountAuth), or with `client_secret_file`: a file that only its
    owner can read, read again at each token request.  The token is cached
    and refreshed `margin` seconds (at most half its lifetime) before it
    expires; thread-safe."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: Optional[str] = None,
        client_secret_file: Optional[str] = None,
        scope: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: tuple = DEFAULT_TIMEOUT,
        margin: float = DEFAULT_MARGIN,
    ):
        super().__init__(margin)
        if not token_url:
            raise ValueError("token_url must not be empty")
        self._token_url = token_url
        self._cred = _SecretCredentials(client_id, client_secret, client_secret_file)
        self._scope = scope
        self._headers = dict(headers or {})
        self._timeout = timeout

    def _fetch_locked(self) -> Tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        form.update(self._cred.form())
        if self._scope:
            form["scope"] = self._scope
        return post_token(self._token_url, form, self._timeout, self._headers)

    def __repr__(self):
        return "ServiceAccountAuth(%r, client_id=%r)" % (self._token_url, self._cred.client_id)


class ExchangedTokenAuth(_RefreshingAuth):
    """RFC 8693 token exchange: `inner`'s token (any AuthProvider) is swapped
    at `token_url` for a token for `audience` (Keycloak's standard token
    exchange v2; the exchanging client needs it switched on and an audience
    mapper for `audience`, and must be in the inner token's aud).

    The exchange request is authenticated as a client:
      - with `client_id` and `client_secret` or `client_secret_file`; or
      - with `client_auth`, a WorkloadIdentityAuth: its JWT-SVID as a
        jwt-spiffe client assertion, no secret; or
      - by default, when `inner` is a WorkloadIdentityAuth, with `inner`
        itself: the workload exchanges its own token.

    When Keycloak refuses the subject token and `inner` can refresh, the
    inner token is dropped and the exchange tried once more."""

    def __init__(
        self,
        inner,
        audience: str,
        token_url: str,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        client_secret_file: Optional[str] = None,
        client_auth=None,
        scope: Optional[str] = None,
        requested_token_type: Optional[str] = None,
        subject_token_type: str = TOKEN_TYPE_ACCESS_TOKEN,
        headers: Optional[Dict[str, str]] = None,
        timeout: tuple = DEFAULT_TIMEOUT,
        margin: float = DEFAULT_MARGIN,
    ):
        super().__init__(margin)
        if inner is None or not callable(getattr(inner, "get_token", None)):
            raise ValueError("inner must have get_token()")
        if not audience:
            raise ValueError("audience must not be empty")
        if not token_url:
            raise ValueError("token_url must not be empty")
        self._inner = inner
        self._audience = audience
        self._token_url = token_url
        self._scope = scope
        self._requested = requested_token_type
        self._subject_type = subject_token_type
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._cred = None
        self._assertion = None
        if client_secret is not None or client_secret_file is not None:
            if client_auth is not None:
                raise ValueError("give client_auth or a client secret, not both")
            self._cred = _SecretCredentials(client_id, client_secret, client_secret_file)
        else:
            if client_auth is None and callable(getattr(inner, "client_assertion_form", None)):
                client_auth = inner
            if client_auth is None or not callable(getattr(client_auth, "client_assertion_form", None)):
                raise ValueError(
                    "ExchangedTokenAuth needs client credentials for the exchange: "
                    "client_id with client_secret or client_secret_file, or "
                    "client_auth=WorkloadIdentityAuth(...)")
            self._assertion = client_auth

    def _exchange(self, subject: str) -> Tuple[str, float]:
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": self._subject_type,
            "audience": self._audience,
        }
        if self._requested:
            form["requested_token_type"] = self._requested
        if self._scope:
            form["scope"] = self._scope
        form.update(self._cred.form() if self._cred is not None else self._assertion.client_assertion_form())
        return post_token(self._token_url, form, self._timeout, self._headers)

    def _fetch_locked(self) -> Tuple[str, float]:
        subject = self._inner.get_token()
        try:
            return self._exchange(subject)
        except TokenRequestRefused as e:
            invalidate = getattr(self._inner, "invalidate", None)
            if e.status != 400 or e.error != "invalid_request" or not callable(invalidate):
                raise
            # Keycloak says "Invalid token" for an expired or revoked
            # subject token: one more try with a fresh one
            invalidate(subject)
            fresh = self._inner.get_token()
            if fresh == subject:
                raise
            return self._exchange(fresh)

    def __repr__(self):
        return "ExchangedTokenAuth(%r, audience=%r, %r)" % (self._inner, self._audience, self._token_url)
