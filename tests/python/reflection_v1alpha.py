"""grpcio's reflection client (grpcio-reflection, from pip), which speaks
grpc.reflection.v1alpha, against cubeid-agent: run by
tests/grpc-reflection.sh in the cached virtualenv of
tests/lib/python-peers.sh.  Prints TAP lines ("ok - ..." / "not ok - ...");
the script numbers them.

    reflection_v1alpha.py SOCKET WANT_ID

Lists the services, finds SpiffeWorkloadAPI and its messages in a
descriptor pool fed only by reflection, and calls FetchJWTSVID with
message classes made from those descriptors.
"""
import base64
import json
import sys
import traceback

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

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


def main():
    sock, want = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel("unix://" + sock)
    db = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(db)

    def services():
        got = sorted(db.get_services())
        require("SpiffeWorkloadAPI" in got, "services %s" % got)
        require("grpc.reflection.v1alpha.ServerReflection" in got, "services %s" % got)
        return ", ".join(got)

    def describe():
        svc = pool.FindServiceByName("SpiffeWorkloadAPI")
        methods = sorted(m.name for m in svc.methods)
        require(len(methods) == 7, "methods %s" % methods)
        m = svc.FindMethodByName("FetchJWTSVID")
        require(m.input_type.full_name == "JWTSVIDRequest", m.input_type.full_name)
        require(not m.server_streaming, "FetchJWTSVID is unary")
        x = svc.FindMethodByName("FetchX509SVID")
        require(x.server_streaming, "FetchX509SVID streams")
        claims = pool.FindMessageTypeByName("ValidateJWTSVIDResponse").fields_by_name["claims"]
        require(claims.message_type.full_name == "google.protobuf.Struct",
                claims.message_type.full_name)
        return ", ".join(methods)

    def unknown():
        try:
            pool.FindMessageTypeByName("no.Such.Thing")
        except KeyError:
            return "KeyError"
        raise AssertionError("an unknown symbol was found")

    def fetch_jwt():
        req_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("JWTSVIDRequest"))
        resp_cls = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("JWTSVIDResponse"))
        call = channel.unary_unary("/SpiffeWorkloadAPI/FetchJWTSVID",
                                   request_serializer=req_cls.SerializeToString,
                                   response_deserializer=resp_cls.FromString)
        resp = call(req_cls(audience=["py-reflection"]),
                    metadata=(("workload.spiffe.io", "true"),), timeout=60)
        require(len(resp.svids) >= 1, "no SVID")
        s = resp.svids[0]
        require(s.spiffe_id == want, "SPIFFE ID %s" % s.spiffe_id)
        payload = s.svid.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        require(claims["aud"] in ("py-reflection", ["py-reflection"]), "aud %r" % claims["aud"])
        return s.spiffe_id

    check("grpcio-reflection (v1alpha) lists the services", services)
    check("a descriptor pool fed by reflection has SpiffeWorkloadAPI", describe)
    check("an unknown symbol is not found", unknown)
    check("FetchJWTSVID with message classes from reflection", fetch_jwt)
    channel.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
