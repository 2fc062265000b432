"""WorkloadIdentityAuth: a Keycloak access token with no secret anywhere.

The workload's JWT-SVID comes from cubeid-agent over the SPIFFE Workload API
(py-spiffe's WorkloadApiClient, unchanged), with the realm issuer as its
audience, and is sent to Keycloak's token endpoint as a client assertion of
type jwt-spiffe (Keycloak's federated client authentication).  Keycloak
finds the client by the JWT-SVID's sub (the SPIFFE ID) and checks its
signature with the keys from the agent's SPIFFE bundle endpoint.

Nothing is kept but the access token: the JWT-SVID is fetched for each token
request and dropped after it."""

import os
import threading
from typing import Dict, Optional, Tuple

import grpc
from spiffe import SpiffeId, WorkloadApiClient
from spiffe.errors import ArgumentError
from spiffe.workloadapi.errors import FetchJwtSvidError

from ._base import (
    DEFAULT_MARGIN,
    DEFAULT_TIMEOUT,
    _RefreshingAuth,
    jwt_claims,
    post_token,
    token_issuer,
)
from .errors import (
    AgentError,
    AgentSocketError,
    NoIdentityError,
    UnexpectedClientError,
)

ASSERTION_TYPE_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
SOCKET_ENV = "SPIFFE_ENDPOINT_SOCKET"


def _socket_address(socket: Optional[str]) -> str:
    value = socket if socket is not None else os.environ.get(SOCKET_ENV, "")
    if not value:
        raise AgentSocketError(
            "no Workload API socket: %s is not set. Point it at cubeid-agent's socket "
            "(export %s=unix:///run/cubeid/agent.sock) or pass socket=" % (SOCKET_ENV, SOCKET_ENV))
    if value.startswith("/"):
        value = "unix:" + value
    return value


class WorkloadIdentityAuth(_RefreshingAuth):
    """client_credentials with the workload's JWT-SVID as a jwt-spiffe client
    assertion.

    token_url  the realm's token endpoint, .../realms/REALM/protocol/openid-connect/token
    client_id  the Keycloak client the workload's SPIFFE ID is registered as;
               it is not sent (Keycloak finds the client by the SPIFFE ID and
               refuses a client_id that differs from it), but the issued
               token's azp must be it, else UnexpectedClientError
    audience   the JWT-SVID's audience: default the realm issuer (token_url
               without /protocol/openid-connect/token), which Keycloak
               requires exactly
    socket     the agent's socket (unix:///path or /path); default
               $SPIFFE_ENDPOINT_SOCKET
    spiffe_id  which of the workload's SPIFFE IDs to use; default the first
               the agent gives
    """

    def __init__(
        self,
        token_url: str,
        client_id: Optional[str] = None,
        audience: Optional[str] = None,
        socket: Optional[str] = None,
        spiffe_id: Optional[str] = None,
        scope: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: tuple = DEFAULT_TIMEOUT,
        margin: float = DEFAULT_MARGIN,
        agent_timeout: float = 30.0,
    ):
        super().__init__(margin)
        if not token_url:
            raise ValueError("token_url must not be empty")
        self._token_url = token_url
        self._client_id = client_id
        self._audience = audience or token_issuer(token_url)
        self._address = _socket_address(socket)
        self._spiffe_id = SpiffeId(spiffe_id) if spiffe_id else None
        self._scope = scope
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._agent_timeout = agent_timeout
        self._client = None
        self._client_lock = threading.Lock()

    def _workload_api(self) -> WorkloadApiClient:
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = WorkloadApiClient(self._address, default_timeout=self._agent_timeout)
                except ArgumentError as e:
                    raise AgentSocketError(
                        "no cubeid agent socket at %s (%s). Is cubeid-agent running? "
                        "Check %s or socket=" % (self._address, e, SOCKET_ENV)) from None
            return self._client

    def _jwt_svid(self) -> str:
        client = self._workload_api()
        try:
            svid = client.fetch_jwt_svid({self._audience}, subject=self._spiffe_id)
        except FetchJwtSvidError as e:
            cause = e.__cause__
            code = cause.code() if isinstance(cause, grpc.Call) else None
            details = cause.details() if isinstance(cause, grpc.Call) else str(e)
            who = " %s" % self._spiffe_id if self._spiffe_id else ""
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise NoIdentityError(
                    "the cubeid agent at %s has no identity%s for this workload "
                    "(PermissionDenied: %s). Add a registration entry whose selectors "
                    "match this process (cubeid-entries(5), docs/entries.md)"
                    % (self._address, who, details)) from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise AgentError(
                    "the cubeid agent at %s is unavailable (%s). Check that cubeid-agent "
                    "runs ('cubeid status'); it retries on its own while it starts"
                    % (self._address, details), code="UNAVAILABLE") from None
            raise AgentError(
                "the cubeid agent at %s refused a JWT-SVID%s: %s"
                % (self._address, who, details), code=code.name if code else None) from None
        return svid.token

    def client_assertion_form(self) -> Dict[str, str]:
        """The form fields that authenticate this workload as a client at
        the token endpoint: a fresh JWT-SVID as a jwt-spiffe assertion (used
        by ExchangedTokenAuth too)."""
        return {"client_assertion_type": ASSERTION_TYPE_SPIFFE, "client_assertion": self._jwt_svid()}

    def _fetch_locked(self) -> Tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        form.update(self.client_assertion_form())
        if self._scope:
            form["scope"] = self._scope
        token, expires_in = post_token(self._token_url, form, self._timeout, self._headers)
        if self._client_id is not None:
            azp = jwt_claims(token).get("azp")
            if azp != self._client_id:
                raise UnexpectedClientError(
                    "Keycloak issued the token to client %r, not %r: this workload's SPIFFE ID "
                    "is registered as that client (its jwt.credential.sub)" % (azp, self._client_id))
        return token, expires_in

    def close(self) -> None:
        """Close the connection to the agent (get_token() opens a new one)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __repr__(self):
        return "WorkloadIdentityAuth(%r, audience=%r)" % (self._token_url, self._audience)
