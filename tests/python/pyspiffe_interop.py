"""py-spiffe, unchanged (from pip), against cubeid-agent: run by
tests/interop-python.sh in a cached virtualenv (tests/lib/python-peers.sh).
Prints TAP lines ("ok - ..." / "not ok - ..."); the script numbers them.

    pyspiffe_interop.py SOCKET WANT_ID

WorkloadApiClient (every call), validate_jwt_svid, X509Source and JwtSource,
and stream_x509_contexts across two X.509 rotations.
"""
import sys
import threading
import time
import traceback

from spiffe import JwtSource, JwtSvid, SpiffeId, WorkloadApiClient, X509Source

failures = 0


def check(name, fn):
    global failures
    try:
        detail = fn()
        print("ok - %s%s" % (name, ": %s" % detail if detail else ""))
    except Exception as e:  # a failed check, whatever it raised
        failures += 1
        print("not ok - %s: %r" % (name, e))
        for line in traceback.format_exc().splitlines()[-6:]:
            print("#   " + line)
    sys.stdout.flush()


def require(cond, what):
    if not cond:
        raise AssertionError(what)


def verify_chain(chain, bundle):
    """Each certificate is signed by the next; the last by a bundle authority."""
    for cert, issuer in zip(chain, chain[1:]):
        cert.verify_directly_issued_by(issuer)
    last = chain[-1]
    for ca in bundle.x509_authorities:
        try:
            last.verify_directly_issued_by(ca)
            return
        except Exception:
            continue
    raise AssertionError("no authority in the bundle issued the chain")


def main():
    socket, want = sys.argv[1], SpiffeId(sys.argv[2])
    td = want.trust_domain
    addr = "unix:" + socket
    client = WorkloadApiClient(addr, default_timeout=30)
    token = {}

    def x509_svid():
        s = client.fetch_x509_svid()
        require(s.spiffe_id == want, "SPIFFE ID %s" % s.spiffe_id)
        return str(s.spiffe_id)

    def x509_context():
        ctx = client.fetch_x509_context()
        s = ctx.default_svid
        verify_chain(s.cert_chain, ctx.x509_bundle_set.get_bundle_for_trust_domain(td))
        return "the chain verifies against the served bundle"

    def x509_bundles():
        b = client.fetch_x509_bundles().get_bundle_for_trust_domain(td)
        require(b is not None and b.x509_authorities, "no X.509 authorities")
        return "%d authorities for %s" % (len(b.x509_authorities), td)

    def jwt_one():
        s = client.fetch_jwt_svid({"py-one"})
        require(s.spiffe_id == want, "SPIFFE ID %s" % s.spiffe_id)
        require(set(s.audience) == {"py-one"}, "aud %s" % s.audience)
        token["t"] = s.token

    def jwt_two():
        s = client.fetch_jwt_svid({"py-one", "py-two"})
        require(set(s.audience) == {"py-one", "py-two"}, "aud %s" % s.audience)

    def jwt_bundles():
        b = client.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
        require(b is not None and b.jwt_authorities, "no JWT authorities")
        s = JwtSvid.parse_and_validate(token["t"], b, {"py-one"})
        require(s.spiffe_id == want, "SPIFFE ID %s" % s.spiffe_id)
        return "%d keys; the JWT-SVID verifies with them" % len(b.jwt_authorities)

    def validate():
        s = client.validate_jwt_svid(token["t"], "py-one")
        require(s.spiffe_id == want, "SPIFFE ID %s" % s.spiffe_id)

    def validate_refuses():
        try:
            client.validate_jwt_svid(token["t"], "someone-else")
        except Exception as e:
            return "refused: %s" % e
        raise AssertionError("accepted a token for another audience")

    check("WorkloadApiClient.fetch_x509_svid", x509_svid)
    check("WorkloadApiClient.fetch_x509_context", x509_context)
    check("WorkloadApiClient.fetch_x509_bundles", x509_bundles)
    check("WorkloadApiClient.fetch_jwt_svid, one audience", jwt_one)
    check("WorkloadApiClient.fetch_jwt_svid, two audiences", jwt_two)
    check("WorkloadApiClient.fetch_jwt_bundles, and JwtSvid.parse_and_validate", jwt_bundles)
    check("WorkloadApiClient.validate_jwt_svid", validate)
    check("WorkloadApiClient.validate_jwt_svid refuses another audience", validate_refuses)

    # rotations: a stream and an X509Source, side by side
    lock = threading.Lock()
    streamed, sourced, errors = set(), set(), []

    def on_ctx(ctx):
        with lock:
            streamed.add(ctx.default_svid.leaf.serial_number)

    handler = client.stream_x509_contexts(on_ctx, errors.append, retry_connect=False)
    src = {}

    def x509_source():
        src["x"] = X509Source(socket_path=addr, timeout_in_seconds=30)
        s = src["x"].get_x509_context().default_svid
        require(s.spiffe_id == want, "SPIFFE ID %s" % s.spiffe_id)
        verify_chain(s.cert_chain, src["x"].get_bundle_for_trust_domain(td))
        src["x"].subscribe_for_updates(
            lambda: sourced.add(src["x"].get_x509_context().default_svid.leaf.serial_number))
        sourced.add(s.leaf.serial_number)
        return str(s.spiffe_id)

    def jwt_source():
        with JwtSource(socket_path=addr, timeout_in_seconds=30) as js:
            s = js.fetch_svid({"py-source"})
            v = JwtSvid.parse_and_validate(s.token, js.get_bundle_for_trust_domain(td), {"py-source"})
            require(v.spiffe_id == want, "SPIFFE ID %s" % v.spiffe_id)
            return "its JWT-SVID verifies with its own bundle"

    def rotations():
        end = time.monotonic() + 60
        while time.monotonic() < end and (len(streamed) < 3 or len(sourced) < 3):
            require(not errors, "the stream failed: %r" % (errors[:1],))
            time.sleep(0.2)
        require(len(streamed) >= 3, "the stream saw %d SVIDs" % len(streamed))
        require(len(sourced) >= 3, "the source held %d SVIDs" % len(sourced))
        return "stream %d SVIDs, source %d" % (len(streamed), len(sourced))

    check("X509Source", x509_source)
    check("JwtSource", jwt_source)
    check("stream_x509_contexts and X509Source see two rotations", rotations)
    handler.cancel()
    if "x" in src:
        src["x"].close()
    client.close()
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
