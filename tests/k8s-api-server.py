#!/usr/bin/env python3
"""A loopback stand-in for the Kubernetes API server's ConfigMap endpoints,
for tests/cluster-k8s.sh: the faults a real API server does not make on
demand (tests/cluster-k8s-apiserver.sh runs everything else against a real
one).  It answers the three requests cubeid's Kubernetes store makes with
response bodies shaped like the API server's (tests/fixtures/k8s/*.json,
written from the Kubernetes API reference), and checks the
bearer token, the server-side apply content type and fieldManager, and the
label selector.  It serves no watch (400): the agent then reads the store
every refresh, as it does whenever its watch is down.  Every request is
logged as one JSON line.

While the --fault-file exists, its content decides every answer:
  500       a 500 Status (an internal error of the API server)
  hold      hold the answer until the file is gone or says otherwise (a
            slow answer; logged as {"event": "holding", ...} when it starts)
  gone      answer a watch with an ERROR event 410 Gone (Expired), as the
            API server does when the resourceVersion is older than it keeps

  k8s-api-server.py --cert C --key K --token-file T --fixtures DIR
                    --port-file P --log L [--fault-file F]

Serves on 127.0.0.1, port chosen by the kernel, written to --port-file.
"""
import argparse
import http.server
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

ap = argparse.ArgumentParser()
ap.add_argument("--cert", required=True)
ap.add_argument("--key", required=True)
ap.add_argument("--token-file", required=True)
ap.add_argument("--fixtures", required=True)
ap.add_argument("--port-file", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--fault-file")
args = ap.parse_args()


def fixture(name):
    with open(os.path.join(args.fixtures, name)) as f:
        return json.load(f)


def read(path):
    with open(path) as f:
        return f.read().strip()


store = {}  # (ns, name) -> ConfigMap
lock = threading.Lock()
rv = [1000]


def fault():
    try:
        with open(args.fault_file) as f:
            return f.read().strip()
    except (OSError, TypeError):
        return ""


def log(entry):
    with lock:
        with open(args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

CM_PATH = re.compile(r"^/api/v1/namespaces/([a-z0-9-]+)/configmaps(?:/([a-z0-9.-]+))?$")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def reply(self, code, body):
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def status(self, code, fixture_name, name=""):
        body = json.loads(json.dumps(fixture(fixture_name)).replace("NAME", name))
        self.reply(code, body)

    def handle_any(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        auth = self.headers.get("Authorization", "")
        entry = {"method": method, "path": url.path, "query": q,
                 "content_type": self.headers.get("Content-Type"),
                 "accept": self.headers.get("Accept"), "auth": "none"}
        try:
            if auth == "Bearer " + read(args.token_file):
                entry["auth"] = "ok"
            elif auth.startswith("Bearer "):
                entry["auth"] = "bad"
            m = CM_PATH.match(url.path)
            if entry["auth"] in ("none", "bad"):
                return self.status(401, "status-401.json")
            if q.get("watch"):
                entry["watch"] = True
                if fault() == "gone":
                    # the resourceVersion is older than the server keeps
                    entry["fault"] = "gone"
                    ev = {"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "Expired", "code": 410,
                        "message": "too old resource version: %s (%d)"
                                   % (q.get("resourceVersion", ["0"])[0], rv[0])}}
                    raw = (json.dumps(ev) + "\n").encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                # no watch here: the agent falls back to listing
                return self.reply(400, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Failure",
                                        "message": "the stand-in does not serve watches",
                                        "reason": "BadRequest", "code": 400})
            if fault() == "hold":
                log({"event": "holding", "method": method, "path": url.path})
                while fault() == "hold":
                    time.sleep(0.05)
            if fault() == "500":
                entry["fault"] = "500"
                return self.reply(500, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Failure",
                                        "message": "Internal error occurred: a test fault",
                                        "reason": "InternalError",
                                        "details": {"causes": [{"message": "a test fault"}]},
                                        "code": 500})
            if m is None:
                return self.status(404, "status-404.json", url.path)
            ns, name = m.group(1), m.group(2)
            with lock:
                if method == "GET" and name is None:
                    sel = q.get("labelSelector", [""])[0]
                    items = [cm for (n2, _), cm in sorted(store.items())
                             if n2 == ns and (not sel or sel in cm["metadata"].get("labels", {}))]
                    lst = fixture("configmap-list.json")
                    lst["metadata"]["resourceVersion"] = str(rv[0])
                    lst["items"] = items
                    entry["items"] = len(items)
                    return self.reply(200, lst)
                if method == "PATCH" and name is not None:
                    if self.headers.get("Content-Type") != "application/apply-patch+yaml":
                        return self.reply(415, {"kind": "Status", "code": 415,
                                                "message": "unsupported media type"})
                    if q.get("fieldManager") != ["cubeid-agent"]:
                        return self.reply(422, {"kind": "Status", "code": 422,
                                                "message": "fieldManager is required for apply requests"})
                    obj = json.loads(body)  # JSON is YAML
                    md = obj.get("metadata", {})
                    if (obj.get("kind") != "ConfigMap" or obj.get("apiVersion") != "v1"
                            or md.get("name") != name or md.get("namespace") != ns):
                        return self.reply(400, {"kind": "Status", "code": 400,
                                                "message": "the name of the object does not match"})
                    rv[0] += 1
                    created = (ns, name) not in store
                    cm = fixture("configmap.json")
                    cm["metadata"].update(name=name, namespace=ns, uid=str(uuid.uuid4()),
                                          resourceVersion=str(rv[0]),
                                          labels=md.get("labels", {}))
                    cm["data"] = obj.get("data", {})
                    store[(ns, name)] = cm
                    entry["labels"] = md.get("labels")
                    entry["data_keys"] = sorted(cm["data"])
                    return self.reply(201 if created else 200, cm)
                if method == "DELETE" and name is not None:
                    if store.pop((ns, name), None) is None:
                        return self.status(404, "status-404.json", name)
                    return self.status(200, "status-delete.json", name)
            return self.reply(405, {"kind": "Status", "code": 405, "message": "method not allowed"})
        finally:
            log(entry)

    def do_GET(self):
        self.handle_any("GET")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(args.cert, args.key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(args.port_file + ".tmp", args.port_file)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
