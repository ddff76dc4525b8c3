"""TLS to upstreams: proxy_pass https://, certificate verification (502 on a mismatch), SNI,
a client certificate presented upstream (mTLS to services) and session reuse across
connections. The upstream is a real TLS server (Python's ssl module) with certificates made
by the `openssl` CLI (certs.py)."""
import json
import os
import re
import socket
import subprocess
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from certs import Pki
from harness import BINARY


def compiled_modules():
    try:
        out = subprocess.run([BINARY, "-V"], capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout + out.stderr


pytestmark = pytest.mark.skipif(
    not re.search(r"\bproxy\b", compiled_modules().split("modules:")[-1]),
    reason="the proxy module is not compiled in",
)


@pytest.fixture(scope="module")
def pki():
    root = tempfile.mkdtemp(prefix="tollgate-pki-up-")
    os.chmod(root, 0o755)
    ca = Pki(os.path.join(root, "ca"), "Upstream CA")
    os.chmod(ca.dir, 0o755)
    return {
        "ca": ca,
        "svc": ca.issue("svc", "svc.internal", sans=["svc.internal"]),
        "gw": ca.issue("gw", "gateway", kind="client", org="Edge"),
    }


class TlsUpstream:
    """An HTTPS server on 127.0.0.1 answering JSON: SNI, client certificate subject, resumed."""

    def __init__(self, cert, key, client_ca=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sni = []
        self.ctx.sni_callback = lambda s, name, c: self.sni.append(name)
        if client_ca:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_OPTIONAL
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                cert = self.connection.getpeercert()
                subject = ""
                if cert:
                    subject = ",".join("%s=%s" % kv for rdn in cert["subject"] for kv in rdn)
                body = json.dumps(
                    {"path": self.path, "client": subject, "reused": self.connection.session_reused}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = self.ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def get(port, path="/"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def block(upstream_port, lines):
    return (
        "http {\n server {\n listen 127.0.0.1:{port};\n location / {\n"
        " proxy_pass https://127.0.0.1:%d;\n%s }\n }\n}\n" % (upstream_port, lines)
    )


def test_proxy_to_https_verifies_and_sends_sni(tollgate_factory, pki):
    up = TlsUpstream(*pki["svc"])
    try:
        ca = pki["ca"].ca_cert
        good = (
            " proxy_ssl_verify on;\n proxy_ssl_trusted_certificate %s;\n"
            " proxy_ssl_server_name on;\n proxy_ssl_name svc.internal;\n" % ca
        )
        t = tollgate_factory(block(up.port, good)).start()
        status, body = get(t.port, "/hello")
        assert status == 200, body
        assert json.loads(body)["path"] == "/hello"
        assert up.sni[-1] == "svc.internal"
        t.cleanup()
        # The certificate does not name 127.0.0.1: verification fails, 502.
        bad = " proxy_ssl_verify on;\n proxy_ssl_trusted_certificate %s;\n" % ca
        t = tollgate_factory(block(up.port, bad)).start()
        status, body = get(t.port, "/hello")
        assert status == 502, body
        assert "certificate verify failed" in t.error_log()
        t.cleanup()
        # Without verification the same upstream is reached.
        t = tollgate_factory(block(up.port, "")).start()
        status, _ = get(t.port)
        assert status == 200
    finally:
        up.stop()


def test_proxy_presents_client_certificate_and_reuses_sessions(tollgate_factory, pki):
    ca = pki["ca"].ca_cert
    up = TlsUpstream(*pki["svc"], client_ca=ca)
    try:
        crt, key = pki["gw"]
        lines = " proxy_ssl_certificate %s;\n proxy_ssl_certificate_key %s;\n proxy_ssl_protocols TLSv1.2;\n" % (crt, key)
        t = tollgate_factory(block(up.port, lines)).start()
        seen = []
        for _ in range(4):
            status, body = get(t.port)
            assert status == 200, body
            seen.append(json.loads(body))
        assert all(d["client"] == "commonName=gateway,organizationName=Edge" or "gateway" in d["client"] for d in seen)
        assert seen[0]["reused"] is False
        assert any(d["reused"] for d in seen[1:]), seen
    finally:
        up.stop()


def test_proxy_ssl_config_errors(tollgate_factory, pki):
    t = tollgate_factory(block(1, " proxy_ssl_verify on;\n"))
    rc, err = t.test_config()
    assert rc == 1 and "no proxy_ssl_trusted_certificate for proxy_ssl_verify" in err
    assert ":11:" in err  # the proxy_pass line (6 harness lines before the http block)
    t = tollgate_factory(block(1, " proxy_ssl_certificate /nonexistent.crt;\n proxy_ssl_certificate_key /nonexistent.key;\n"))
    rc, err = t.test_config()
    assert rc == 1 and 'cannot load certificate "/nonexistent.crt"' in err
