#!/usr/bin/env python3
"""A fake Gthulhu API server for the VM tests (standard library only, plus
`cryptography` or the openssl command to sign tokens).

  fake_gthulhu_api.py --strategies FILE --log FILE [--port N] [--port-file FILE]
                      [--private-key PEM] [--token-shape old|new]

- POST /api/v1/auth/token: with --private-key, answers an RS256 JWT signed with
  that key (exp in 1 h), in the older `{success, message, timestamp, token}` or
  the newer `{success, data: {token, expired_at}, timestamp}` shape. Only tokens
  this process issued are accepted afterwards, so a restarted server answers 401
  to an old one. Without --private-key no token is required.
- GET /api/v1/scheduling/strategies: `{"success": true, ..., "scheduling": L}`
  where L is the JSON in --strategies, re-read on every request (write it with
  a rename to change it atomically).
- POST /api/v1/metrics: `{"success": true, ...}`.
Every request is logged to --log as one JSON line: t (epoch s), method, path,
headers, body, status. Binds 127.0.0.1:--port (0 = any; the chosen port is
written to --port-file once listening).
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STRATEGIES = "/api/v1/scheduling/strategies"
TOKEN = "/api/v1/auth/token"
METRICS = "/api/v1/metrics"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rs256_signer(key_path):
    """A function bytes -> RS256 signature with the PEM private key."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    except ImportError:
        return lambda data: subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", key_path],
            input=data, capture_output=True, check=True).stdout


def make_jwt(sign):
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"iss": "fake-gthulhu-api", "sub": "gthulhu-vm-test", "iat": now,
              "nbf": now - 5, "exp": now + 3600, "jti": uuid.uuid4().hex}
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode())).encode()
    return signing_input.decode() + "." + b64url(sign(signing_input)), claims["exp"]


def stamp():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gthulhu-api/1"

    def log_message(self, fmt, *args):  # no stderr noise
        pass

    def reply(self, status, obj, body_in):
        out = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        srv = self.server
        line = json.dumps({"t": time.time(), "method": self.command, "path": self.path,
                           "headers": dict(self.headers.items()),
                           "body": body_in.decode("utf-8", "replace"), "status": status})
        with srv.log_lock:
            srv.log.write(line + "\n")
            srv.log.flush()

    def authorized(self):
        if self.server.sign is None:
            return True
        value = self.headers.get("Authorization", "")
        return value.startswith("Bearer ") and value[7:] in self.server.tokens

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        body = self.body()
        if self.path != STRATEGIES:
            return self.reply(404, {"success": False, "error": "not found"}, body)
        if not self.authorized():
            return self.reply(401, {"success": False, "error": "unauthorized"}, body)
        try:
            with open(self.server.strategies) as f:
                scheduling = json.load(f)
        except (OSError, ValueError) as e:
            return self.reply(500, {"success": False, "error": str(e)}, body)
        self.reply(200, {"success": True, "message": "ok", "timestamp": stamp(),
                         "scheduling": scheduling}, body)

    def do_POST(self):
        body = self.body()
        if self.path == TOKEN:
            try:
                key = json.loads(body)["public_key"]
            except (ValueError, KeyError, TypeError):
                key = None
            if self.server.sign is None or not isinstance(key, str) or "PUBLIC KEY" not in key:
                return self.reply(400, {"success": False, "error": "bad token request"}, body)
            token, exp = make_jwt(self.server.sign)
            self.server.tokens.add(token)
            if self.server.token_shape == "new":
                obj = {"success": True, "data": {"token": token, "expired_at": exp},
                       "timestamp": stamp()}
            else:
                obj = {"success": True, "message": "ok", "timestamp": stamp(), "token": token}
            return self.reply(200, obj, body)
        if self.path == METRICS:
            if not self.authorized():
                return self.reply(401, {"success": False, "error": "unauthorized"}, body)
            try:
                json.loads(body)
            except ValueError:
                return self.reply(400, {"success": False, "error": "bad json"}, body)
            return self.reply(200, {"success": True, "message": "metrics received",
                                    "timestamp": stamp()}, body)
        self.reply(404, {"success": False, "error": "not found"}, body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--strategies", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--private-key")
    p.add_argument("--token-shape", choices=["old", "new"], default="old")
    a = p.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.strategies = a.strategies
    srv.log = open(a.log, "a")
    srv.log_lock = threading.Lock()
    srv.sign = rs256_signer(a.private_key) if a.private_key else None
    srv.tokens = set()
    srv.token_shape = a.token_shape
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{srv.server_address[1]}\n")
        os.replace(tmp, a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
