"""A small real HTTP(S) server for the gateway's own outgoing calls (JWKS URIs, RFC 7662
introspection endpoints): python's http.server in a thread, answering through a function the
test sets, recording every request. Loopback only; every wait is bounded."""
import http.server
import os
import ssl
import subprocess
import threading
import time


class ControlPlane:
    """Answers with `self.handler(method, path, headers, body) -> (status, headers, body)`.

    A handler may return ("hang", seconds) to answer nothing for that long, then close.
    `self.requests` records (method, path, headers dict lowercased, body bytes)."""

    def __init__(self, handler, port=0, tls=None):
        self.handler = handler
        self.requests = []
        self.lock = threading.Lock()
        self.port = port
        self.tls = tls  # (certfile, keyfile)
        self.httpd = None
        self.thread = None

    def start(self):
        plane = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with plane.lock:
                    plane.requests.append((self.command, self.path, headers, body))
                out = plane.handler(self.command, self.path, headers, body)
                if out[0] == "hang":
                    time.sleep(out[1])
                    self.close_connection = True
                    return
                status, extra, payload = out
                if isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=10)
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def count(self, path=None):
        with self.lock:
            return sum(1 for r in self.requests if path is None or r[1] == path)

    def url(self, path="/"):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def make_ca(d, name):
    """A self-signed test CA in `d`: returns (cert, key) paths."""
    key = os.path.join(d, name + ".key")
    cert = os.path.join(d, name + ".pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_server_cert(d, ca, name="server", san="IP:127.0.0.1,DNS:localhost"):
    """A server certificate for 127.0.0.1/localhost signed by `ca`: returns (cert, key)."""
    key = os.path.join(d, name + ".key")
    csr = os.path.join(d, name + ".csr")
    cert = os.path.join(d, name + ".pem")
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key
