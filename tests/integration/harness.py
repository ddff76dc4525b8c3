"""Runs the real tollgate binary for integration tests.

A Tollgate instance owns a temporary prefix (world-readable, since workers drop to `nobody`
when the tests run as root), writes a config around the test's http block, starts the master
in the foreground and waits until its first listen port accepts connections.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SOURCE = os.environ.get("TOLLGATE_SOURCE", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
BINARY = os.environ.get("TOLLGATE_BIN", os.path.join(SOURCE, "build", "tollgate"))


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, host="127.0.0.1", timeout=10.0):
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        with socket.socket(family) as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.02)
    return False


def raw_request(port, data, timeout=3.0, host="127.0.0.1", shut_write=False):
    """Sends raw bytes and returns everything read until the server closes or `timeout` passes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)


def split_responses(data):
    """Splits a byte stream of HTTP/1.1 responses that carry Content-Length into (status, headers, body)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


class Tollgate:
    """One tollgate master with its workers, on a private prefix."""

    def __init__(self, http_block, workers=1, main="", events="worker_connections 1024;", port=None):
        self.prefix = tempfile.mkdtemp(prefix="tollgate-test-")
        os.chmod(self.prefix, 0o755)
        os.makedirs(os.path.join(self.prefix, "logs"))
        os.makedirs(os.path.join(self.prefix, "conf"))
        shutil.copy(os.path.join(SOURCE, "conf", "mime.types"), os.path.join(self.prefix, "conf"))
        self.port = port or free_port()
        self.workers = workers
        self.main = main
        self.events = events
        self.proc = None
        self.write_config(http_block)

    @property
    def conf_path(self):
        return os.path.join(self.prefix, "conf", "tollgate.conf")

    def path(self, *parts):
        return os.path.join(self.prefix, *parts)

    def render(self, http_block):
        return (
            f"worker_processes {self.workers};\n"
            "daemon off;\n"
            "error_log logs/error.log info;\n"
            "pid logs/tollgate.pid;\n"
            f"{self.main}\n"
            f"events {{ {self.events} }}\n"
            + http_block.replace("{port}", str(self.port)).replace("{prefix}", self.prefix)
            + "\n"
        )

    def write_config(self, http_block):
        with open(self.conf_path, "w") as f:
            f.write(self.render(http_block))

    def command(self, *args):
        return [BINARY, "-p", self.prefix + "/", "-c", "conf/tollgate.conf", *args]

    def test_config(self):
        """Runs `tollgate -t`; returns (exit code, stderr text)."""
        r = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)
        return r.returncode, r.stderr

    def start(self, wait=True, env=None):
        # Output goes to files, never to pipes nobody reads (a full pipe would block the server).
        self._out = open(self.path("logs", "stdout.log"), "ab")
        self._err = open(self.path("logs", "stderr.log"), "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._out, stderr=self._err, env=env)
        if wait and not wait_port(self.port):
            self.stop()
            raise RuntimeError("tollgate did not start: " + self.error_log())
        return self

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        self.signal(signal.SIGHUP)

    def worker_pids(self):
        """The pids of the master's current children."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return sorted(int(p) for p in out.stdout.split())

    def wait_workers(self, n, timeout=10.0, exclude=()):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in self.worker_pids() if p not in exclude]
            if len(pids) == n:
                return pids
            time.sleep(0.02)
        raise AssertionError(f"expected {n} workers, have {self.worker_pids()}")

    def wait_exit(self, timeout=10.0):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._out.close()
            self._err.close()

    def stderr(self):
        """What the master and workers wrote to standard error (sanitizer reports land here)."""
        try:
            with open(self.path("logs", "stderr.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def error_log(self):
        try:
            with open(self.path("logs", "error.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)


def server_block(body, port_placeholder="{port}"):
    """A minimal http block with one server on 127.0.0.1:{port} holding `body`."""
    return "http {\n    include mime.types;\n    server {\n        listen 127.0.0.1:%s;\n%s\n    }\n}\n" % (
        port_placeholder,
        body,
    )
