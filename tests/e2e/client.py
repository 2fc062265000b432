"""The SDK side of tests/e2e.sh: AgentCube's Python SDK auth (the cubeid
package) driving the Router with requests, and two probes that talk to the
WorkloadManager directly over mTLS.

  client.py call AUTH METHOD URL        print "STATUS BODY"
     AUTH: none | sa:TOKEN_URL:CLIENT_ID:SECRET_FILE | workload:TOKEN_URL
  client.py token TOKEN_URL CLIENT_ID SECRET_FILE     print an access token
  client.py wm HOST PORT CERTDIR TOKEN_FILE PATH [ROTATIONS WATCHFILE]
     an mTLS GET to the WorkloadManager with CERTDIR's svid.pem,
     svid_key.pem and svid_bundle.pem; prints "STATUS BODY" per request, or
     "HANDSHAKE-REFUSED reason".  PATH may be "POST /path" (no body).  With ROTATIONS, keeps the connection and
     repeats the request each time WATCHFILE (a delivered certificate)
     changes, until it changed ROTATIONS times.
"""
import hashlib
import http.client
import os
import ssl
import sys
import time

import requests

from cubeid import ServiceAccountAuth, WorkloadIdentityAuth


def auth_of(spec):
    if spec == "none":
        return None
    kind, rest = spec.split(":", 1)
    if kind == "workload":
        return WorkloadIdentityAuth(rest)
    # sa:http://127.0.0.1:PORT/realms/R/protocol/openid-connect/token:CLIENT:FILE
    url, client, secret_file = rest.rsplit(":", 2)
    return ServiceAccountAuth(url, client, client_secret_file=secret_file)


def call(spec, method, url):
    r = requests.request(method, url, auth=auth_of(spec), timeout=60)
    print(r.status_code, r.text.strip())


def wm(host, port, certdir, token_file, path, rotations=0, watch=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # SPIFFE: the server's ID is in its URI SAN
    ctx.load_cert_chain(os.path.join(certdir, "svid.pem"), os.path.join(certdir, "svid_key.pem"))
    ctx.load_verify_locations(os.path.join(certdir, "svid_bundle.pem"))
    token = open(token_file).read().strip()
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
    headers = {"Authorization": "Bearer " + token}

    method, path = path.split(" ", 1) if " " in path else ("GET", path)

    def once():
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        print(r.status, r.read().decode().strip(), flush=True)

    try:
        once()
    except (ssl.SSLError, ConnectionError) as e:
        print("HANDSHAKE-REFUSED", e)
        return
    sock = conn.sock
    def digest():
        with open(watch, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    last = digest() if watch else None
    seen = 0
    while seen < int(rotations):
        time.sleep(0.2)
        d = digest()
        if d != last:
            last = d
            seen += 1
            once()
            print("SAME-CONNECTION", conn.sock is sock, flush=True)


def main(argv):
    if argv[0] == "call":
        call(*argv[1:])
    elif argv[0] == "token":
        print(ServiceAccountAuth(argv[1], argv[2], client_secret_file=argv[3]).get_token())
    elif argv[0] == "wm":
        wm(*argv[1:])
    else:
        sys.exit("usage: see the docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
