"""cubeid: Keycloak access tokens for AgentCube's Python SDK.

    from cubeid import WorkloadIdentityAuth
    auth = WorkloadIdentityAuth("https://kc/realms/agentcube/protocol/openid-connect/token")
    auth.get_token()                 # AgentCube's AuthProvider
    requests.Session().auth = auth   # a requests.auth.AuthBase

docs/sdk-python.md in the cubeid source tree is the guide.
"""

from ._base import AuthProvider
from .auth import ExchangedTokenAuth, ServiceAccountAuth, TokenAuth, read_secret_file
from .errors import (
    AgentError,
    AgentSocketError,
    CubeidAuthError,
    KeycloakUnreachableError,
    NoIdentityError,
    SecretFileError,
    TokenRequestRefused,
    UnexpectedClientError,
)
from .workload import WorkloadIdentityAuth

__version__ = "0.1.0"

__all__ = [
    "AuthProvider",
    "TokenAuth",
    "ServiceAccountAuth",
    "WorkloadIdentityAuth",
    "ExchangedTokenAuth",
    "read_secret_file",
    "CubeidAuthError",
    "AgentSocketError",
    "NoIdentityError",
    "AgentError",
    "TokenRequestRefused",
    "KeycloakUnreachableError",
    "SecretFileError",
    "UnexpectedClientError",
]
