"""A small, bounded HTTP/1.1 load client for integration tests (stdlib only).

Every run is bounded twice: by a total request count and by a wall-clock deadline. Each thread
alternates between two connection styles:

  * keepalive: one connection carries up to `keepalive_batch` requests, then is closed;
  * fresh:     one request per connection, with "Connection: close".

Retry rule (RFC 9110 section 9.2.2 / RFC 9112 section 9.3.1): a client may resend a request only
when a *reused, idle* keepalive connection is closed (EOF or reset) before any byte of the
response arrived -- the server may have closed the idle connection just as the request was sent.
That one case is retried once on a fresh connection and counted in `retries`. Anything else (a
reset or EOF on a fresh connection, a reset after part of a response, a timeout, a bad status or
a bad body) is a failure and is recorded in `failures`.
"""
import collections
import re
import socket
import threading
import time


class _IdleClose(Exception):
    """A reused keepalive connection closed before any response byte: the one retryable case."""


class ResponseError(Exception):
    pass


class LoadResult:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.sent = 0
        self.retries = 0
        self.failures = []  # (kind, detail) strings, capped
        self.failure_count = 0
        self.bodies = collections.Counter()
        self.connections = 0
        self.elapsed = 0.0

    def fail(self, kind, detail):
        with self.lock:
            self.failure_count += 1
            if len(self.failures) < 50:
                self.failures.append(f"{kind}: {detail}")

    def summary(self):
        return (
            f"sent={self.sent} ok={self.ok} failed={self.failure_count} retries={self.retries} "
            f"connections={self.connections} elapsed={self.elapsed:.2f}s "
            f"rate={self.ok / max(self.elapsed, 1e-9):.0f}/s"
        )


def read_response(sock, reused, method="GET"):
    """Reads one response with Content-Length from `sock`.

    Returns (status, headers dict with lower-case names, body bytes). Raises _IdleClose when
    `reused` is true and the connection ends before any byte arrived, ResponseError otherwise.
    """
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            if not buf and reused:
                raise _IdleClose(repr(e))
            raise ResponseError(f"{type(e).__name__} after {len(buf)} response bytes (reused={reused})")
        except socket.timeout:
            raise ResponseError(f"timeout after {len(buf)} response bytes (reused={reused})")
        if not chunk:
            if not buf and reused:
                raise _IdleClose("EOF")
            raise ResponseError(f"EOF after {len(buf)} response bytes (reused={reused})")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ResponseError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if "content-length" not in headers:
        raise ResponseError(f"no Content-Length in {head!r}")
    n = int(headers["content-length"])
    while len(rest) < n:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout) as e:
            raise ResponseError(f"{type(e).__name__} in body after {len(rest)}/{n} bytes")
        if not chunk:
            raise ResponseError(f"EOF in body after {len(rest)}/{n} bytes")
        rest += chunk
    if len(rest) > n:
        raise ResponseError(f"{len(rest) - n} unexpected bytes after the body")
    return status, headers, rest[:n]


def _connect(host, port, timeout):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((host, port))
    return s


def run_load(
    port,
    path="/",
    total=1000,
    threads=4,
    duration=30.0,
    keepalive_batch=20,
    body_re=None,
    expect_status=200,
    host="127.0.0.1",
    timeout=5.0,
    stop=None,
    result=None,
):
    """Sends at most `total` requests over at most `duration` seconds; returns a LoadResult.

    body_re: a regex (bytes) every body must fully match; bodies are also counted in
    result.bodies. stop: an optional threading.Event that ends the run early. result: a LoadResult
    to fill (so another thread can watch progress), or None for a new one.
    """
    result = result if result is not None else LoadResult()
    pattern = re.compile(body_re) if body_re is not None else None
    budget = [total]
    budget_lock = threading.Lock()
    deadline = time.monotonic() + duration
    stop = stop or threading.Event()

    def take():
        with budget_lock:
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

    def check(status, headers, body):
        if status != expect_status:
            raise ResponseError(f"status {status}, body {body[:200]!r}")
        if pattern is not None and not pattern.fullmatch(body):
            raise ResponseError(f"unexpected body {body[:200]!r}")
        with result.lock:
            result.ok += 1
            result.bodies[body] += 1

    def one_fresh(req_close):
        s = _connect(host, port, timeout)
        with result.lock:
            result.connections += 1
        try:
            s.sendall(req_close)
            status, headers, body = read_response(s, reused=False)
            check(status, headers, body)
        finally:
            s.close()

    def worker(index):
        req_keep = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
        req_close = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        keepalive_turn = index % 2 == 0
        while not stop.is_set() and time.monotonic() < deadline:
            keepalive_turn = not keepalive_turn
            if not keepalive_turn:
                if not take():
                    return
                with result.lock:
                    result.sent += 1
                try:
                    one_fresh(req_close)
                except (OSError, ResponseError, _IdleClose) as e:
                    result.fail("fresh", f"{type(e).__name__}: {e}")
                continue
            try:
                s = _connect(host, port, timeout)
            except OSError as e:
                if take():
                    with result.lock:
                        result.sent += 1
                    result.fail("connect", repr(e))
                continue
            with result.lock:
                result.connections += 1
            served = 0
            try:
                while served < keepalive_batch and time.monotonic() < deadline and not stop.is_set():
                    if not take():
                        return
                    with result.lock:
                        result.sent += 1
                    reused = served > 0
                    try:
                        try:
                            s.sendall(req_keep)
                        except (BrokenPipeError, ConnectionResetError) as e:
                            if reused:
                                raise _IdleClose(repr(e))
                            raise ResponseError(f"send failed on a fresh connection: {e!r}")
                        status, headers, body = read_response(s, reused=reused)
                    except _IdleClose:
                        # The single allowed retry: a fresh connection, and no further retries.
                        with result.lock:
                            result.retries += 1
                        try:
                            one_fresh(req_close)
                        except (OSError, ResponseError, _IdleClose) as e:
                            result.fail("retry", f"{type(e).__name__}: {e}")
                        break
                    except (OSError, ResponseError) as e:
                        result.fail("keepalive", f"{type(e).__name__}: {e} (request {served + 1} on the connection)")
                        break
                    served += 1
                    try:
                        check(status, headers, body)
                    except ResponseError as e:
                        result.fail("keepalive", str(e))
                        break
                    if headers.get("connection", "").lower() == "close":
                        break
            finally:
                s.close()

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + timeout + 5)
    result.elapsed = time.monotonic() - started
    return result


class BackgroundLoad:
    """run_load in a background thread: start(), then join() for the LoadResult."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.stop = threading.Event()
        self.result = LoadResult()  # filled while the load runs: watch result.sent for progress
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        run_load(stop=self.stop, result=self.result, **self.kwargs)

    def start(self):
        self.thread.start()
        return self

    def running(self):
        return self.thread.is_alive()

    def join(self, timeout=None):
        self.thread.join(timeout)
        return self.result
