#!/usr/bin/env python3
# A loopback stand-in for the kubelet's secure port, for tests/test-attest:
# GET /pods over TLS answers the pod list only with the right bearer token
# (401 otherwise), and appends every Authorization header it got to a log.
#
#   kubelet-https.py CERT KEY TOKEN_FILE PODS_JSON PORT_FILE AUTH_LOG
#
# It binds 127.0.0.1 on a free port and writes the port to PORT_FILE
# (atomically) once it listens.  Stop it with SIGTERM.
import http.server
import os
import ssl
import sys

cert, key, token_file, pods, port_file, auth_log = sys.argv[1:7]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        with open(auth_log, "a") as f:
            f.write(auth + "\n")
        with open(token_file) as f:
            want = "Bearer " + f.read().strip()
        if self.path != "/pods":
            self.send_error(404)
            return
        if auth != want:
            self.send_error(401)
            return
        with open(pods, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
