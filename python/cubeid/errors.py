"""Typed errors.  Each message says what failed and what to do about it.

    CubeidAuthError                      every error below
    +-- AgentSocketError                 no cubeid-agent socket to talk to
    +-- NoIdentityError                  the agent has no identity for this
    |                                    workload (PermissionDenied)
    +-- AgentError                       the agent answered with another error
    +-- TokenRequestRefused              the token endpoint said no (OAuth
    |                                    error and description); also a
    |                                    requests.HTTPError
    +-- KeycloakUnreachableError         no answer from the token endpoint;
    |                                    also a requests.ConnectionError
    +-- SecretFileError                  a client secret file that is unsafe
    |                                    or unreadable
    +-- UnexpectedClientError            the token is for another client than
                                         the one asked for
"""

import requests


class CubeidAuthError(Exception):
    """Base class of every error the cubeid auth providers raise."""


class AgentSocketError(CubeidAuthError):
    """No Workload API socket: SPIFFE_ENDPOINT_SOCKET is unset, or names a
    file that does not exist."""


class NoIdentityError(CubeidAuthError):
    """The agent answered PermissionDenied: no registration entry gives this
    workload an identity (or not the SPIFFE ID asked for)."""


class AgentError(CubeidAuthError):
    """The agent could not be reached on its socket, or answered with an
    error other than PermissionDenied (Unavailable while it starts, ...)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        #: the gRPC status code name, e.g. "UNAVAILABLE", or None
        self.code = code


class TokenRequestRefused(CubeidAuthError, requests.HTTPError):
    """The token endpoint refused the request.  `status` is the HTTP status,
    `error` and `error_description` Keycloak's OAuth error (None when the
    reply had none)."""

    def __init__(self, message, status=None, error=None, error_description=None, response=None):
        requests.HTTPError.__init__(self, message, response=response)
        self.status = status
        self.error = error
        self.error_description = error_description


class KeycloakUnreachableError(CubeidAuthError, requests.ConnectionError):
    """No HTTP answer from the token endpoint (connection refused, DNS,
    TLS, timeout)."""


class SecretFileError(CubeidAuthError):
    """The client secret file cannot be used: group or others have access
    to it, it is not a regular file, it is empty or unreadable."""


class UnexpectedClientError(CubeidAuthError):
    """Keycloak issued the token to another client than `client_id`: the
    workload's SPIFFE ID is registered as a different client."""
