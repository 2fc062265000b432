"""The cubeid package against the real cubeid-agent (SoftHSM2) and a real
Keycloak 26.5.6: run by tests/sdk-python.sh, which starts both and sets
CUBEID_T_* (see there).  Nothing here is mocked: tokens come from Keycloak,
JWT-SVIDs from the agent through py-spiffe.

Token requests are counted at a loopback proxy in front of Keycloak; the
401 cases use a loopback resource server that refuses chosen tokens."""

import http.client
import json
import os
import stat
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import requests.auth

import cubeid
from cubeid import (
    AgentSocketError,
    AuthProvider,
    CubeidAuthError,
    ExchangedTokenAuth,
    KeycloakUnreachableError,
    NoIdentityError,
    SecretFileError,
    ServiceAccountAuth,
    TokenAuth,
    TokenRequestRefused,
    UnexpectedClientError,
    WorkloadIdentityAuth,
)
from cubeid._base import jwt_claims

ENV = os.environ
if "CUBEID_T_KC_URL" not in ENV:
    pytest.fail("run by tests/sdk-python.sh: CUBEID_T_KC_URL is not set", pytrace=False)

KC = ENV["CUBEID_T_KC_URL"]
REALM = ENV["CUBEID_T_REALM"]
TD = ENV["CUBEID_T_TD"]
TOKEN_URL = "%s/realms/%s/protocol/openid-connect/token" % (KC, REALM)
WORKLOAD_ID = "spiffe://%s/py/workload" % TD
SHORT_ID = "spiffe://%s/py/short" % TD
UNREGISTERED_ID = "spiffe://%s/py/unregistered" % TD


def claims(token):
    c = jwt_claims(token)
    assert c, "not a JWT: %r" % token[:20]
    return c


def roles(token):
    return set(claims(token).get("realm_access", {}).get("roles", []))


def get_then_expire(auth):
    """A token, then sleep until it has expired and the cache's refresh
    point has passed: past its exp, and its lifetime after this process
    received it.  An event, not a time limit: the test waits as long as it
    takes, however slow the machine."""
    tok = auth.get_token()
    received = time.time()
    c = claims(tok)
    life = c["exp"] - c["iat"]
    while time.time() <= max(c["exp"] + 1, received + life):
        time.sleep(0.2)
    return tok


def set_lifespan(client_id, seconds):
    """The client's access token lifespan, through the admin API."""
    c = admin_get("/clients?clientId=" + client_id)[0]
    c.setdefault("attributes", {})["access.token.lifespan"] = str(seconds)
    admin_call("PUT", "/clients/" + c["id"], c)


class _Server:
    def __init__(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class CountingProxy(_Server):
    """A reverse proxy to Keycloak that counts token requests.  It keeps the
    Host header, so Keycloak names the proxy's URL as the realm issuer, and
    the default audience of WorkloadIdentityAuth (from token_url) matches."""

    def __init__(self, upstream):
        self.lock = threading.Lock()
        self.token_requests = 0
        self.upstream = urllib.parse.urlsplit(upstream)
        super().__init__(_ProxyHandler)

    def count(self):
        with self.lock:
            return self.token_requests


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def _forward(self):
        p = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST" and self.path.endswith("/protocol/openid-connect/token"):
            with p.lock:
                p.token_requests += 1
        conn = http.client.HTTPConnection(p.upstream.hostname, p.upstream.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward


class ResourceServer(_Server):
    """A loopback API: 401 for a refused bearer token, 200 otherwise."""

    def __init__(self):
        self.lock = threading.Lock()
        self.refused = set()
        self.refuse_all = False
        self.seen = []
        super().__init__(_ResourceHandler)


class _ResourceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def do_GET(self):
        rs = self.server.owner
        h = self.headers.get("Authorization", "")
        tok = h[len("Bearer "):] if h.startswith("Bearer ") else None
        with rs.lock:
            rs.seen.append(tok)
            deny = tok is None or rs.refuse_all or tok in rs.refused
        body = b'{"error":"invalid_token"}' if deny else b'{"ok":true}'
        self.send_response(401 if deny else 200)
        if deny:
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="session")
def proxy():
    p = CountingProxy(KC)
    yield p
    p.close()


@pytest.fixture
def client_dir():
    """A directory for another client's secret files, beside
    other-client/sdk.secret and outside the scanned directories."""
    import tempfile
    return tempfile.mkdtemp(dir=os.path.dirname(ENV["CUBEID_T_SA_SECRET_FILE"]))


@pytest.fixture
def rs():
    s = ResourceServer()
    yield s
    s.close()


def proxied(p):
    return "%s/realms/%s/protocol/openid-connect/token" % (p.url, REALM)


def admin_call(method, path, body=None):
    with open(ENV["CUBEID_T_ADMIN_PASSWORD_FILE"]) as f:
        pw = f.read().strip()
    t = requests.post("%s/realms/master/protocol/openid-connect/token" % KC,
                      data={"grant_type": "password", "client_id": "admin-cli",
                            "username": "admin", "password": pw}, timeout=60)
    t.raise_for_status()
    r = requests.request(method, KC + "/admin/realms/%s%s" % (REALM, path), json=body,
                         headers={"Authorization": "Bearer " + t.json()["access_token"]}, timeout=60)
    r.raise_for_status()
    return r.json() if r.content else None


def admin_get(path):
    return admin_call("GET", path)


def sa_user_id(client_id):
    c = admin_get("/clients?clientId=" + client_id)[0]
    return admin_get("/clients/%s/service-account-user" % c["id"])["id"]


# -- the package ------------------------------------------------------------

def test_package_is_the_installed_one():
    site = os.path.realpath(ENV["CUBEID_T_SITE"])
    assert os.path.realpath(cubeid.__file__).startswith(site + os.sep), cubeid.__file__


def test_every_class_is_an_agentcube_auth_provider_and_a_requests_auth():
    inner = WorkloadIdentityAuth(TOKEN_URL)
    for a in (TokenAuth("t"), ServiceAccountAuth(TOKEN_URL, "c", client_secret="s"), inner,
              ExchangedTokenAuth(inner, "workloadmanager", TOKEN_URL)):
        assert isinstance(a, AuthProvider), a
        assert isinstance(a, requests.auth.AuthBase), a


def test_token_auth():
    assert TokenAuth("abc").get_token() == "abc"
    with pytest.raises(ValueError):
        TokenAuth("")
    r = requests.Request("GET", "http://127.0.0.1/", auth=TokenAuth("abc")).prepare()
    assert r.headers["Authorization"] == "Bearer abc"


# -- WorkloadIdentityAuth ---------------------------------------------------

def test_workload_identity_token_is_the_workload_clients(rs):
    auth = WorkloadIdentityAuth(TOKEN_URL, client_id="py-workload")
    tok = auth.get_token()
    c = claims(tok)
    print("token: azp=%s sub=%s roles=%s iss=%s" % (c.get("azp"), c.get("sub"), sorted(roles(tok)), c["iss"]))
    assert c["azp"] == "py-workload"
    assert c["iss"] == "%s/realms/%s" % (KC, REALM)
    # add-workload.sh gives it the Router's audience, as the SDK client has
    assert "agentcube-router" in (c["aud"] if isinstance(c["aud"], list) else [c["aud"]])
    # the service account's roles, the composite sandbox:manage expanded
    assert {"sandbox:manage", "sandbox:invoke"} <= roles(tok)
    assert "admin" not in roles(tok)
    assert c["sub"] == sa_user_id("py-workload")
    assert auth.get_token() == tok, "a fresh token is cached"
    s = requests.Session()
    s.auth = auth
    r = s.get(rs.url + "/api")
    assert r.status_code == 200 and rs.seen == [tok]


def test_the_jwt_svid_comes_from_cubeid_agent():
    # the same JWT-SVID the auth sends, through py-spiffe from the agent's
    # socket, validated by the agent; Keycloak checks it against the
    # agent's /spiffe/bundle and nothing else
    from spiffe import WorkloadApiClient
    aud = "%s/realms/%s" % (KC, REALM)
    with WorkloadApiClient(ENV["SPIFFE_ENDPOINT_SOCKET"], default_timeout=30) as wl:
        svid = wl.fetch_jwt_svid({aud})
        assert str(svid.spiffe_id) == WORKLOAD_ID
        wl.validate_jwt_svid(svid.token, aud)
        hdr = json.loads(_b64(svid.token.split(".")[0]))
        bundle = requests.get(ENV["CUBEID_T_AGENT_URL"] + "/spiffe/bundle", timeout=30).json()
        assert hdr["kid"] in {k.get("kid") for k in bundle["keys"]}
    metrics = requests.get(ENV["CUBEID_T_AGENT_URL"] + "/metrics", timeout=30).text
    line = [l for l in metrics.splitlines() if l.startswith('cubeid_svids_cached{type="jwt"}')]
    assert line and int(line[0].split()[-1]) >= 1, line


def _b64(s):
    import base64
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_unregistered_spiffe_id_is_refused_with_keycloaks_error():
    auth = WorkloadIdentityAuth(TOKEN_URL, spiffe_id=UNREGISTERED_ID)
    with pytest.raises(TokenRequestRefused) as ei:
        auth.get_token()
    e = ei.value
    print("refused: %s" % e)
    assert e.status in (400, 401)
    assert e.error in ("invalid_client", "unauthorized_client")
    assert e.error in str(e)
    if e.error_description:
        assert e.error_description in str(e)
    assert isinstance(e, requests.HTTPError) and isinstance(e, CubeidAuthError)


def test_a_spiffe_id_the_workload_lacks_is_permission_denied():
    auth = WorkloadIdentityAuth(TOKEN_URL, spiffe_id="spiffe://%s/py/not-mine" % TD)
    with pytest.raises(NoIdentityError) as ei:
        auth.get_token()
    print("no identity: %s" % ei.value)
    assert "PermissionDenied" in str(ei.value)


def test_a_client_id_other_than_the_registered_one_is_an_error():
    with pytest.raises(UnexpectedClientError) as ei:
        WorkloadIdentityAuth(TOKEN_URL, client_id="agentcube-sdk").get_token()
    assert "py-workload" in str(ei.value)


def test_no_agent_socket(tmp_path, monkeypatch):
    with pytest.raises(AgentSocketError) as ei:
        WorkloadIdentityAuth(TOKEN_URL, socket=str(tmp_path / "no.sock")).get_token()
    print("no socket: %s" % ei.value)
    monkeypatch.delenv("SPIFFE_ENDPOINT_SOCKET")
    with pytest.raises(AgentSocketError) as ei:
        WorkloadIdentityAuth(TOKEN_URL)
    assert "SPIFFE_ENDPOINT_SOCKET" in str(ei.value)


def test_keycloak_unreachable():
    # a port nobody listens on, from tests/lib/free-port.sh
    url = "http://127.0.0.1:%s/realms/%s/protocol/openid-connect/token" % (ENV["CUBEID_T_CLOSED_PORT"], REALM)
    with pytest.raises(KeycloakUnreachableError) as ei:
        WorkloadIdentityAuth(url).get_token()
    print("unreachable: %s" % ei.value)
    assert isinstance(ei.value, requests.ConnectionError)


def test_refresh_after_expiry(proxy):
    auth = WorkloadIdentityAuth(proxied(proxy), client_id="py-short", spiffe_id=SHORT_ID)
    n0 = proxy.count()
    t1 = get_then_expire(auth)
    assert claims(t1)["exp"] - claims(t1)["iat"] <= 5, "py-short has 5 s tokens"
    t2 = auth.get_token()
    assert t2 != t1
    assert claims(t2)["exp"] > claims(t1)["exp"]
    assert proxy.count() == n0 + 2


def test_twenty_threads_at_expiry_make_one_token_request(proxy):
    auth = WorkloadIdentityAuth(proxied(proxy), client_id="py-short", spiffe_id=SHORT_ID)
    t1 = get_then_expire(auth)
    # the token the threads get lives 300 s, so that however late a thread
    # runs, the one refresh is still fresh for it
    set_lifespan("py-short", 300)
    try:
        n0 = proxy.count()
        barrier = threading.Barrier(20)
        got, errors = [], []

        def worker():
            try:
                barrier.wait()
                got.append(auth.get_token())
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        set_lifespan("py-short", 5)
    assert not errors, errors
    assert len(got) == 20 and len(set(got)) == 1 and got[0] != t1
    c = claims(got[0])
    assert c["exp"] - c["iat"] > 5, "the new lifespan applies"
    assert proxy.count() == n0 + 1, "%d token requests" % (proxy.count() - n0)


def _sa_auth(url, **kw):
    return ServiceAccountAuth(url, "agentcube-sdk", client_secret_file=ENV["CUBEID_T_SA_SECRET_FILE"], **kw)


@pytest.mark.parametrize("kind", ["workload", "service-account"])
def test_a_single_reauthentication_on_401(proxy, rs, kind):
    url = proxied(proxy)
    auth = WorkloadIdentityAuth(url, client_id="py-workload") if kind == "workload" else _sa_auth(url)
    s = requests.Session()
    s.auth = auth
    t1 = auth.get_token()
    n0 = proxy.count()
    # the server has stopped accepting t1 (say, revoked): one new token
    rs.refused.add(t1)
    r = s.get(rs.url + "/api")
    assert r.status_code == 200
    assert [h.status_code for h in r.history] == [401]
    assert len(rs.seen) == 2 and rs.seen[0] == t1 and rs.seen[1] != t1
    assert proxy.count() == n0 + 1
    assert auth.get_token() == rs.seen[1], "the new token is cached"
    # a server that refuses every token: one retry, then its 401
    rs.refuse_all = True
    n1, seen1 = proxy.count(), len(rs.seen)
    r = s.get(rs.url + "/api")
    assert r.status_code == 401
    assert len(rs.seen) == seen1 + 2
    assert proxy.count() == n1 + 1


# -- ServiceAccountAuth -----------------------------------------------------

def test_service_account_with_a_secret_file():
    auth = _sa_auth(TOKEN_URL)
    tok = auth.get_token()
    assert claims(tok)["azp"] == "agentcube-sdk"
    assert "sandbox:invoke" in roles(tok)
    assert auth.get_token() == tok
    with open(ENV["CUBEID_T_SA_SECRET_FILE"]) as f:
        secret = f.read().strip()
    # AgentCube's own arguments: the secret itself
    assert claims(ServiceAccountAuth(TOKEN_URL, "agentcube-sdk", secret).get_token())["azp"] == "agentcube-sdk"


def test_service_account_refuses_a_secret_file_others_can_read(client_dir):
    import pathlib
    f = pathlib.Path(client_dir) / "secret"
    with open(ENV["CUBEID_T_SA_SECRET_FILE"]) as src:
        f.write_text(src.read())
    for mode in (0o644, 0o640, 0o604):
        os.chmod(f, mode)
        with pytest.raises(SecretFileError) as ei:
            ServiceAccountAuth(TOKEN_URL, "agentcube-sdk", client_secret_file=str(f))
        assert "chmod 600" in str(ei.value)
    print("refused: %s" % ei.value)
    os.chmod(f, 0o600)
    assert ServiceAccountAuth(TOKEN_URL, "agentcube-sdk", client_secret_file=str(f)).get_token()
    # a file made unsafe after construction is refused at the next request
    auth = ServiceAccountAuth(TOKEN_URL, "agentcube-sdk", client_secret_file=str(f), margin=0)
    os.chmod(f, 0o644)
    with pytest.raises(SecretFileError):
        auth.get_token()


def test_service_account_wrong_secret_gives_keycloaks_error(tmp_path):
    f = tmp_path / "wrong"
    f.write_text("not-the-secret\n")
    os.chmod(f, 0o600)
    with pytest.raises(TokenRequestRefused) as ei:
        ServiceAccountAuth(TOKEN_URL, "agentcube-sdk", client_secret_file=str(f)).get_token()
    print("refused: %s" % ei.value)
    assert ei.value.error in ("invalid_client", "unauthorized_client")


# -- ExchangedTokenAuth -----------------------------------------------------

def test_exchanged_token_for_workloadmanager():
    inner = WorkloadIdentityAuth(TOKEN_URL, client_id="py-workload")
    ex = ExchangedTokenAuth(inner, "workloadmanager", TOKEN_URL)
    tok = ex.get_token()
    c, ci = claims(tok), claims(inner.get_token())
    print("exchanged: aud=%s sub=%s azp=%s" % (c.get("aud"), c.get("sub"), c.get("azp")))
    aud = c["aud"] if isinstance(c["aud"], list) else [c["aud"]]
    assert aud == ["workloadmanager"]
    assert c["sub"] == ci["sub"], "the subject is kept"
    assert c["azp"] == "py-workload"
    assert {"sandbox:manage", "sandbox:invoke"} <= roles(tok)
    assert ex.get_token() == tok


def test_exchange_to_an_audience_not_permitted_is_refused():
    inner = WorkloadIdentityAuth(TOKEN_URL, client_id="py-workload")
    with pytest.raises(TokenRequestRefused) as ei:
        ExchangedTokenAuth(inner, "picod", TOKEN_URL).get_token()
    print("refused: %s" % ei.value)
    assert ei.value.error and "picod" in str(ei.value)


def test_exchange_needs_client_credentials():
    with pytest.raises(ValueError):
        ExchangedTokenAuth(TokenAuth("t"), "workloadmanager", TOKEN_URL)


# -- no secret --------------------------------------------------------------

def _client_secrets():
    out = {}
    for c in admin_get("/clients"):
        if c.get("publicClient") or c.get("bearerOnly"):
            continue
        try:
            v = admin_get("/clients/%s/client-secret" % c["id"]).get("value")
        except requests.HTTPError:
            v = None
        if v:
            out[c["clientId"]] = v
    return out


def _scan(top, needles, exclude=()):
    hits = []
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in exclude]
        for name in files:
            p = os.path.join(root, name)
            try:
                st = os.lstat(p)
                if not stat.S_ISREG(st.st_mode):
                    continue
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            hits += ["%s holds the secret of %s" % (p, k) for k, v in needles.items() if v in data]
    return hits


def test_no_client_secret_in_the_workloads_directories():
    # the workload first gets its token, so that anything it would write is there
    auth = WorkloadIdentityAuth(TOKEN_URL, client_id="py-workload")
    assert auth.get_token()
    secrets = _client_secrets()
    assert "agentcube-sdk" in secrets, "the realm's secrets: %s" % sorted(secrets)
    print("client secrets of the realm: %s" % sorted(secrets))
    needles = {k: v.encode() for k, v in secrets.items()}
    # the scan finds a secret where one is (Keycloak's realm import)
    assert _scan(ENV["CUBEID_T_SECRET_DIR"], needles), "the scan finds nothing anywhere"
    exclude = tuple(ENV["CUBEID_T_SCAN_EXCLUDE"].split(":"))
    assert _scan(ENV["CUBEID_T_SCAN_DIR"], needles, exclude) == []
    for k, v in os.environ.items():
        assert not any(s in v for s in secrets.values()), "environment variable %s" % k
    # and the object holds its token, and nothing that is a secret
    state = repr(vars(auth))
    assert not any(s in state for s in secrets.values())
    assert not [k for k in vars(auth) if "secret" in k.lower()]
