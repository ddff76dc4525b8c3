"""A real redis-server for tests (the Debian package's /usr/bin/redis-server).

It runs on a free loopback port (and a Unix socket in its own temporary folder) with no
persistence (`--save '' --appendonly no`), and can be killed, paused (SIGSTOP) and restarted
on the same port, so a test can take Redis away under a running tollgate and bring it back.

    from redis_server import redis_server  # noqa: F401  (the pytest fixture)

    def test_cluster(redis_server, tollgate_factory):
        url = redis_server.url              # "redis://127.0.0.1:PORT"
        redis_server.command("SET", "k", 1)  # a tiny RESP client, no redis-py needed
        redis_server.kill(); redis_server.start()

`redis_server` skips the test when redis-server is not installed. For several servers, or one
with options (`requirepass`), use `RedisServer(...)` directly and call `cleanup()`.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REDIS_SERVER = os.environ.get("TOLLGATE_REDIS_SERVER", "/usr/bin/redis-server")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisError(Exception):
    """An error reply (-ERR ...) from the server."""


class RedisServer:
    def __init__(self, password=None, extra_args=()):
        self.port = _free_port()
        self.password = password
        self.extra_args = list(extra_args)
        self.dir = tempfile.mkdtemp(prefix="tollgate-redis-")
        self.unix_path = os.path.join(self.dir, "redis.sock")
        self.proc = None

    @property
    def url(self):
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        """Starts the server (on the same port as before) and waits until it answers PING."""
        if self.running:
            return
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.dir, "--unixsocket", self.unix_path,
                "--enable-debug-command", "local"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.command("PING", timeout=0.5) == "PONG":
                    return
            except (OSError, RedisError):
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        """SIGKILL: clients see their connections reset."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()  # kills a paused server too; a SIGCONT first would let it answer
        self.proc.wait(timeout=10)
        self.proc = None

    def pause(self):
        """SIGSTOP: connections stay open but nothing is answered (a hung server)."""
        if not self.running:
            return
        self.proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5.0  # the signal is asynchronous: wait until it took
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.proc.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "T":
                        return
            except (OSError, IndexError):
                return
            time.sleep(0.001)

    def resume(self):
        if self.running:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self):
        self.kill()
        self.start()

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- a minimal RESP2 client, one connection per call ----

    def command(self, *args, timeout=5.0):
        """Sends one command; returns str, int, None or a list; raises RedisError on -ERR."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            f = s.makefile("rb")
            if self.password is not None:
                s.sendall(_encode(["AUTH", self.password]))
                _read_reply(f)
            s.sendall(_encode(args))
            return _read_reply(f)


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read_reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_read_reply(f) for _ in range(n)]
    raise OSError(f"bad reply {line!r}")


@pytest.fixture
def redis_server():
    """A started RedisServer, removed after the test; skips when redis-server is missing."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"{REDIS_SERVER} is not installed")
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
