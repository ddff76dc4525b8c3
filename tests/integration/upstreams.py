"""Real upstream servers for the proxy tests, each in background threads on a free loopback port.

Every server has `.port`, `.stop()` (also a context manager), `.connections` (accepted TCP
connections) and `.requests`; they are plain raw-socket servers (no http.server) so the tests
see and control every byte on the wire. Every loop is bounded: servers poll a stop event, every
socket has a timeout, and per-connection request loops have a hard count limit.

* EchoUpstream: HTTP/1.1 keep-alive; answers each request with JSON describing what arrived.
  Behaviours by the last path segments (so they survive a proxy_pass URI rewrite):
  /status/NNN, /chunked/N, /bytes/N, /slow/MS, /close, /eof/N, /headers.
* SlowUpstream: accepts and reads, never answers.  RefusedPort: a port where connect() is refused.
* BlackholeUpstream: a port where connect() hangs (its accept queue is kept full).
* RawUpstream(responses): one canned raw response per connection, then close; records the bytes.
* SSEUpstream: text/event-stream, N chunked events `data: <monotonic ns>\\n\\n`, each flushed.
* WebSocketEchoUpstream: minimal RFC 6455 echo server (+ client helpers ws_*).
* UploadSink: streams a request body of any size, answers {"body_len", "sha256"}.
"""
import base64
import collections
import hashlib
import json
import os
import re
import socket
import struct
import threading
import time
from http import HTTPStatus

BLOCK = 64 * 1024
_PATTERN = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(BLOCK))
MAX_REQUESTS_PER_CONNECTION = 100_000
IDLE_TIMEOUT = 30.0  # an upstream connection idle this long is closed
RECORD_LIMIT = 1 << 20  # raw bytes recorded per connection


def pattern_chunks(n):
    """The deterministic body of `n` bytes the upstreams send, in 64 KiB blocks (never materialised)."""
    mv = memoryview(_PATTERN)
    full, rest = divmod(n, BLOCK)
    for _ in range(full):
        yield mv
    if rest:
        yield mv[:rest]


def pattern_bytes(n):
    return b"".join(bytes(c) for c in pattern_chunks(n))


def pattern_sha256(n):
    h = hashlib.sha256()
    for c in pattern_chunks(n):
        h.update(c)
    return h.hexdigest()


class BadMessage(Exception):
    """The peer sent something that is not strict HTTP/1.1."""


class _Closed(Exception):
    pass


_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")


class Conn:
    """A socket with a read buffer, strict line reading and a record of the raw bytes read."""

    def __init__(self, sock, conn_id, record_limit=RECORD_LIMIT):
        self.sock = sock
        self.id = conn_id
        self.buf = bytearray()
        self.raw = bytearray()
        self.record_limit = record_limit
        self.bytes_read = 0

    def _recv(self, n=BLOCK):
        try:
            b = self.sock.recv(n)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise _Closed() from e
        except socket.timeout as e:
            raise _Closed() from e
        except OSError as e:  # closed by stop()
            raise _Closed() from e
        if not b:
            raise _Closed()
        self.bytes_read += len(b)
        if len(self.raw) < self.record_limit:
            self.raw += b[: self.record_limit - len(self.raw)]
        return b

    def fill(self):
        self.buf += self._recv()

    def read_line(self, limit=16 * 1024):
        """One CRLF-terminated line without its CRLF; a bare LF or an overlong line is an error."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                if not line.endswith(b"\r\n"):
                    raise BadMessage("bare LF")
                return line[:-2]
            if len(self.buf) > limit:
                raise BadMessage("line too long")
            start = len(self.buf)
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def stream_exact(self, n):
        """Yields exactly `n` bytes in pieces, reading from the socket as they come."""
        left = n
        if self.buf:
            take = min(left, len(self.buf))
            piece = bytes(self.buf[:take])
            del self.buf[:take]
            left -= take
            yield piece
        while left:
            b = self._recv(min(BLOCK, left))
            if len(b) > left:  # cannot happen with recv(min(..., left)); kept for clarity
                self.buf += b[left:]
                b = b[:left]
            left -= len(b)
            yield b

    def read_head(self, max_lines=200):
        """Reads a request head strictly: returns (method, target, version, [(name, value)])."""
        line = self.read_line()
        while line == b"":  # tolerate leading CRLFs between keep-alive requests (RFC 9112 2.2)
            line = self.read_line()
        parts = line.split(b" ")
        if len(parts) != 3 or not all(parts) or not _TOKEN.match(parts[0]) or not _VERSION.match(parts[2]):
            raise BadMessage(f"bad request line {line!r}")
        if any(c < 0x21 or c == 0x7F for c in parts[1]):
            raise BadMessage("bad target")
        headers = read_fields(self, max_lines)
        return parts[0].decode(), parts[1].decode("latin-1"), parts[2].decode(), headers

    def sendall(self, data):
        self.sock.sendall(data)


def read_fields(conn, max_lines=200):
    """Header (or trailer) fields up to the empty line, strictly."""
    headers = []
    for _ in range(max_lines):
        line = conn.read_line()
        if line == b"":
            return headers
        if line[:1] in (b" ", b"\t"):
            raise BadMessage("obs-fold")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise BadMessage(f"bad header line {line!r}")
        value = value.strip(b" \t")
        if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
            raise BadMessage("control character in a header value")
        headers.append((name.decode(), value.decode("latin-1")))
    raise BadMessage("too many header lines")


def header_values(headers, name):
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


def header_tokens(headers, name):
    out = []
    for v in header_values(headers, name):
        out += [t.strip().lower() for t in v.split(",") if t.strip()]
    return out


def body_framing(headers, version="HTTP/1.1"):
    """('chunked', None), ('length', n) or ('none', 0) for a request; BadMessage when ambiguous."""
    te = header_values(headers, "transfer-encoding")
    cl = header_values(headers, "content-length")
    if te:
        if cl:
            raise BadMessage("both Content-Length and Transfer-Encoding")
        if version == "HTTP/1.0":
            raise BadMessage("Transfer-Encoding in HTTP/1.0")
        tokens = [t.strip().lower() for t in ",".join(te).split(",")]
        if tokens != ["chunked"]:
            raise BadMessage(f"unsupported Transfer-Encoding {te!r}")
        return "chunked", None
    if cl:
        values = set()
        for v in cl:
            for item in v.split(","):
                item = item.strip()
                if not item.isdigit() or not item.isascii() or len(item) > 18:
                    raise BadMessage(f"bad Content-Length {v!r}")
                values.add(int(item))
        if len(values) != 1:
            raise BadMessage(f"differing Content-Length {cl!r}")
        return "length", values.pop()
    return "none", 0


def stream_chunked(conn, max_chunks=10_000_000):
    """Yields the decoded pieces of a strict chunked body, then consumes the trailer section."""
    for _ in range(max_chunks):
        line = conn.read_line(limit=4096)
        size_s, _, _ext = line.partition(b";")
        if not size_s or len(size_s) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size_s):
            raise BadMessage(f"bad chunk size line {line!r}")
        size = int(size_s, 16)
        if size == 0:
            read_fields(conn)  # trailers, then the final CRLF
            return
        yield from conn.stream_exact(size)
        if conn.read_exact(2) != b"\r\n":
            raise BadMessage("chunk data not followed by CRLF")
    raise BadMessage("too many chunks")


def stream_body(conn, headers, version):
    kind, n = body_framing(headers, version)
    if kind == "chunked":
        return stream_chunked(conn)
    if kind == "length":
        return conn.stream_exact(n)
    return iter(())


def reason(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def response_head(status, headers, version="HTTP/1.1"):
    lines = [f"{version} {status} {reason(status)}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data):
    return b"%x\r\n" % len(data) + bytes(data) + b"\r\n"


def wants_close(version, headers):
    tokens = header_tokens(headers, "connection")
    if version == "HTTP/1.0":
        return "keep-alive" not in tokens
    return "close" in tokens


def wait_until(pred, timeout=5.0, interval=0.01):
    """Polls `pred` until it is true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


class _Server:
    """Listening socket + accept thread + one thread per connection; stop() ends them all."""

    conn_timeout = IDLE_TIMEOUT
    rcvbuf = None  # SO_RCVBUF for accepted connections (None: the kernel's default)

    def __init__(self, host="127.0.0.1", backlog=128):
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:  # inherited by accepted sockets; must be set before listen()
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.lsock.bind((host, 0))
        self.lsock.listen(backlog)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.connections = 0
        self.requests = 0
        self.open_connections = 0
        self.closed_connections = 0
        self.errors = []  # (conn_id, reason) for peers that sent malformed messages
        self.raw = {}  # conn_id -> bytearray of what was read on it (capped at RECORD_LIMIT)
        self.close_times = {}  # conn_id -> time.monotonic() when the connection ended
        self._socks = set()
        self._threads = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True, name=type(self).__name__)
        self._accepter.start()

    @property
    def addr(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                if self.stopping.is_set():
                    s.close()
                    return
                self.connections += 1
                self.open_connections += 1
                conn_id = self.connections
                self._socks.add(s)
                t = threading.Thread(target=self._run_conn, args=(s, conn_id), daemon=True)
                self._threads.append(t)
            t.start()

    def _run_conn(self, s, conn_id):
        s.settimeout(self.conn_timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(s, conn_id)
        with self.lock:
            self.raw[conn_id] = conn.raw
        try:
            self.handle(conn)
        except (_Closed, BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        except OSError:
            pass
        except BadMessage as e:
            with self.lock:
                self.errors.append((conn_id, str(e)))
            try:
                body = json.dumps({"error": "bad_request", "reason": str(e)}).encode()
                s.sendall(response_head(400, [("Content-Length", len(body)), ("Connection", "close")]) + body)
            except OSError:
                pass
        finally:
            with self.lock:
                self.open_connections -= 1
                self.closed_connections += 1
                self.close_times[conn_id] = time.monotonic()
                self._socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def handle(self, conn):
        raise NotImplementedError

    def count_request(self):
        with self.lock:
            self.requests += 1

    def sleep(self, seconds):
        """Sleeps unless the server stops first; False when it stopped."""
        return not self.stopping.wait(seconds)

    def stop(self):
        self.stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accepter.join(timeout=5)
        for t in threads:
            t.join(timeout=5)

    def wait_closed(self, n, timeout=5.0):
        """True once `n` connections have ended (closed by the peer or by us)."""
        return wait_until(lambda: self.closed_connections >= n, timeout)


def _drain_and_close(sock, linger=0.0):
    """Reads what the peer still sends for up to `linger` seconds, so close() sends FIN, not RST."""
    deadline = time.monotonic() + linger
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            if not sock.recv(BLOCK):
                break
        except OSError:
            break


# ---- EchoUpstream -------------------------------------------------------------------------------

_BEHAVIOUR = re.compile(r"(?:^|/)(status|chunked|bytes|slow|eof)/(\d+)$|(?:^|/)(close|headers)$")


class EchoUpstream(_Server):
    """Answers every request with 200 JSON describing it; see the module docstring for behaviours.

    `.log` keeps one dict per request: the JSON fields plus "path"."""

    def __init__(self, host="127.0.0.1", chunk_size=1000, idle_timeout=IDLE_TIMEOUT):
        self.log = collections.deque(maxlen=10_000)
        self.chunk_size = chunk_size
        self.conn_timeout = idle_timeout  # an idle keep-alive connection is closed after this
        super().__init__(host)

    def targets(self):
        return [r["target"] for r in list(self.log)]

    def handle(self, conn):
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            method, target, version, headers = conn.read_head()
            if "100-continue" in header_tokens(headers, "expect") and version == "HTTP/1.1":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            h = hashlib.sha256()
            n = 0
            for piece in stream_body(conn, headers, version):
                h.update(piece)
                n += len(piece)
            self.count_request()
            info = {
                "method": method,
                "target": target,
                "version": version,
                "headers": [[k, v] for k, v in headers],
                "body_len": n,
                "body_sha256": h.hexdigest(),
                "conn_id": conn.id,
            }
            self.log.append(info)
            if not self.respond(conn, method, target, version, headers, info):
                _drain_and_close(conn.sock, 0.05)
                return

    def respond(self, conn, method, target, version, headers, info):
        """Writes the response; False when the connection must close after it."""
        path = target.partition("?")[0]
        m = _BEHAVIOUR.search(path)
        kind, arg = (m.group(1) or m.group(3), int(m.group(2) or 0)) if m else (None, 0)
        close = wants_close(version, headers)
        head_only = method == "HEAD"
        keep = [("Connection", "close")] if close else []
        if version == "HTTP/1.0" and not close:
            keep = [("Connection", "keep-alive")]
        body = json.dumps(info).encode()
        status = 200
        extra = []
        if kind == "status":
            status = arg if 200 <= arg <= 599 else 400
        elif kind == "slow":
            if not self.sleep(arg / 1000.0):
                return False
        elif kind == "close":
            close = True
            keep = [("Connection", "close")]
        elif kind == "headers":
            extra = [
                ("Connection", "X-Hop"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5, max=100"),
                ("Proxy-Foo", "bar"),
                ("Upgrade", "h2c"),
                ("Trailer", "X-Trailer"),
                ("X-Custom", "yes"),
                ("Server", "upstream"),
                ("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),
            ]
            if close:
                extra[0] = ("Connection", "X-Hop, close")
                keep = []
        elif kind == "chunked":
            conn.sendall(response_head(200, [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")] + keep, version))
            if not head_only:
                for piece in pattern_chunks(arg):
                    for off in range(0, len(piece), self.chunk_size):
                        conn.sendall(chunk(piece[off : off + self.chunk_size]))
                conn.sendall(b"0\r\n\r\n")
            return not close
        elif kind == "bytes":
            conn.sendall(response_head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", arg)] + keep, version))
            if not head_only:
                for piece in pattern_chunks(arg):
                    conn.sendall(piece)
            return not close
        elif kind == "eof":
            conn.sendall(response_head(200, [("Content-Type", "application/octet-stream"), ("Connection", "close")], version))
            if not head_only:
                for piece in pattern_chunks(arg):
                    conn.sendall(piece)
            return False
        if status in (204, 304):
            conn.sendall(response_head(status, extra + keep, version))
            return not close
        head = response_head(status, [("Content-Type", "application/json"), ("Content-Length", len(body))] + extra + keep, version)
        conn.sendall(head if head_only else head + body)
        return not close


# ---- SlowUpstream, RefusedPort, BlackholeUpstream -----------------------------------------------


class SlowUpstream(_Server):
    """Accepts, reads whatever arrives, never answers (until the peer closes or stop()).
    With read=False it never reads either, so a peer sending a body stalls once the socket
    buffers are full (for proxy_send_timeout)."""

    def __init__(self, host="127.0.0.1", read=True):
        self.read = read
        if not read:
            self.rcvbuf = 4096
        super().__init__(host)

    def handle(self, conn):
        self.count_request()
        if not self.read:
            self.stopping.wait(IDLE_TIMEOUT)
            return
        for _ in range(1_000_000):
            conn.fill()
            if len(conn.buf) > RECORD_LIMIT:
                conn.buf.clear()


class RefusedPort:
    """A loopback port with a bound but not listening socket: connect() gets RST (ECONNREFUSED)
    and no other process can start listening on it while this object lives."""

    def __init__(self, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.host = host

    def stop(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class BlackholeUpstream:
    """A loopback port where connect() hangs: it listens with backlog 0 and never accepts, and
    its accept queue is filled by our own connections, so Linux drops further SYNs.

    `.works` tells whether a probe connect really timed out (tests should skip otherwise)."""

    def __init__(self, host="127.0.0.1", max_fillers=16):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.family = family
        self.host = host
        self.lsock = socket.socket(family)
        self.lsock.bind((host, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.fillers = []
        self.works = False
        for _ in range(max_fillers):
            if self._probe(0.3):
                continue
            self.works = True
            break

    def _probe(self, timeout):
        """Connects once; True when the connect completed (the filler is kept)."""
        s = socket.socket(self.family)
        s.setblocking(False)
        s.connect_ex((self.host, self.port))
        import select

        _, w, _ = select.select([], [s], [], timeout)
        if w and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            self.fillers.append(s)
            return True
        s.close()
        return False

    def stop(self):
        for s in self.fillers:
            s.close()
        self.lsock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---- RawUpstream ----------------------------------------------------------------------------------


class RawUpstream(_Server):
    """Sends canned raw responses, one per connection (the last one repeats), then closes.

    A response is bytes, or a list of bytes and floats (a float pauses that many seconds), so a
    body can stop half-way. Before answering it reads the request head and, if framed by
    Content-Length, its body; after answering it keeps reading for `linger` seconds so that
    anything sent behind the first request (a smuggled one) is recorded in `.received[i]`."""

    def __init__(self, responses, host="127.0.0.1", linger=0.3, read_body=True, half_close=True):
        self.responses = list(responses) if isinstance(responses, (list, tuple)) else [responses]
        self.linger = linger
        self.read_body = read_body
        self.half_close = half_close  # shutdown(SHUT_WR) right after the response
        self.peer_closed = {}  # conn_id -> True when the peer closed first (within `linger`)
        super().__init__(host)

    @property
    def received(self):
        with self.lock:
            return [bytes(self.raw[k]) for k in sorted(self.raw)]

    def handle(self, conn):
        self.count_request()
        idx = conn.id - 1
        resp = self.responses[min(idx, len(self.responses) - 1)]
        try:
            method, target, version, headers = conn.read_head()
            if self.read_body:
                kind, n = body_framing(headers, version)
                if kind == "length":
                    for _ in conn.stream_exact(n):
                        pass
                elif kind == "chunked":
                    for _ in stream_chunked(conn):
                        pass
        except BadMessage as e:
            with self.lock:
                self.errors.append((conn.id, str(e)))
        parts = resp if isinstance(resp, list) else [resp]
        for p in parts:
            if isinstance(p, (int, float)):
                if not self.sleep(p):
                    return
            elif p == "rst":  # abort: RST instead of FIN
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            else:
                try:
                    conn.sendall(p)
                except OSError:  # the peer closed or reset while we were still sending
                    with self.lock:
                        self.peer_closed[conn.id] = True
                    return
        # record anything else the peer sends (a request smuggled behind the first)
        deadline = time.monotonic() + self.linger
        if self.half_close:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                return
        while time.monotonic() < deadline:
            conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                b = conn.sock.recv(BLOCK)
            except socket.timeout:
                break
            except OSError:
                b = b""
            if not b:
                with self.lock:
                    self.peer_closed[conn.id] = True
                break
            if len(conn.raw) < conn.record_limit:
                conn.raw += b[: conn.record_limit - len(conn.raw)]


# ---- SSEUpstream ----------------------------------------------------------------------------------


class SSEUpstream(_Server):
    """Answers text/event-stream with `events` chunked events spaced by `interval` seconds; each
    is `data: <time.monotonic_ns() at send>\\n\\n` in its own chunk, written with TCP_NODELAY.
    Query `?n=N&interval_ms=MS` overrides the defaults per request."""

    def __init__(self, events=1000, interval=0.002, host="127.0.0.1"):
        self.events = events
        self.interval = interval
        self.sent = 0
        super().__init__(host)

    def handle(self, conn):
        method, target, version, headers = conn.read_head()
        for _ in stream_body(conn, headers, version):
            pass
        self.count_request()
        n, interval = self.events, self.interval
        q = dict(p.split("=", 1) for p in target.partition("?")[2].split("&") if "=" in p)
        n = int(q.get("n", n))
        if "interval_ms" in q:
            interval = float(q["interval_ms"]) / 1000.0
        conn.sendall(
            response_head(
                200,
                [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Transfer-Encoding", "chunked")],
            )
        )
        start = time.monotonic()
        for i in range(n):
            wait = start + i * interval - time.monotonic()
            if wait > 0 and not self.sleep(wait):
                return
            conn.sendall(chunk(b"data: %d\n\n" % time.monotonic_ns()))
            with self.lock:
                self.sent += 1
        conn.sendall(b"0\r\n\r\n")
        _drain_and_close(conn.sock, 0.5)


# ---- WebSocket --------------------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_CONT, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def _mask(payload, key):
    n = len(payload)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload=b"", mask=True, fin=True):
    """One frame; clients must mask (mask=True), servers must not."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if mask:
        key = os.urandom(4)
        return head + key + _mask(payload, key)
    return head + bytes(payload)


def _ws_read_frame(read_exact):
    b0, b1 = read_exact(2)
    if b0 & 0x70:
        raise BadMessage("RSV bits set")
    fin, opcode = bool(b0 & 0x80), b0 & 0x0F
    masked, n = bool(b1 & 0x80), b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exact(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exact(8))
    if n > 64 * 1024 * 1024:
        raise BadMessage("frame too large")
    key = read_exact(4) if masked else None
    payload = read_exact(n) if n else b""
    if masked:
        payload = _mask(payload, key)
    return fin, opcode, masked, payload


class WSClient:
    """A minimal client side of RFC 6455 over a connected socket (what the tests speak)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _read_exact(self, n):
        while len(self.buf) < n:
            b = self.sock.recv(BLOCK)
            if not b:
                raise ConnectionError("closed by the server")
            self.buf += b
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def handshake(self, path="/", host="localhost", extra=b""):
        """Sends the Upgrade request; returns (status, head bytes). Leftover bytes stay buffered."""
        key = base64.b64encode(os.urandom(16)).decode()
        req = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        ).encode() + extra + b"\r\n"
        self.sock.sendall(req)
        for _ in range(1000):
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            b = self.sock.recv(BLOCK)
            if not b:
                break
            self.buf += b
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            raise ConnectionError(f"no handshake response: {bytes(self.buf)[:300]!r}")
        head = bytes(self.buf[: i + 4])
        del self.buf[: i + 4]
        status = int(head.split(b" ", 2)[1])
        self.key = key
        return status, head

    def send(self, opcode, payload):
        self.sock.sendall(ws_frame(opcode, payload, mask=True))

    def recv(self):
        """(opcode, payload) of the next whole message (continuations joined)."""
        fin, opcode, masked, payload = _ws_read_frame(self._read_exact)
        if masked:
            raise BadMessage("server frame is masked")
        data = bytearray(payload)
        for _ in range(10_000):
            if fin:
                break
            fin, _, masked, payload = _ws_read_frame(self._read_exact)
            data += payload
        return opcode, bytes(data)


class WebSocketEchoUpstream(_Server):
    """RFC 6455 echo: answers the handshake (101 + Sec-WebSocket-Accept), echoes text and binary
    messages unmasked, answers ping with pong and close with close. Client frames must be masked.
    `.handshakes` keeps the request headers of each handshake; `.messages` counts echoed ones."""

    def __init__(self, host="127.0.0.1"):
        self.handshakes = []
        self.messages = 0
        super().__init__(host)

    def handle(self, conn):
        method, target, version, headers = conn.read_head()
        self.count_request()
        key = (header_values(headers, "sec-websocket-key") or [""])[0]
        ok = (
            method == "GET"
            and "websocket" in header_tokens(headers, "upgrade")
            and "upgrade" in header_tokens(headers, "connection")
            and header_values(headers, "sec-websocket-version") == ["13"]
            and len(base64.b64decode(key + "==", validate=False) if key else b"") >= 16
        )
        with self.lock:
            self.handshakes.append({"target": target, "headers": headers, "ok": ok})
        if not ok:
            body = b'{"error":"not a websocket handshake"}'
            conn.sendall(response_head(400, [("Content-Length", len(body)), ("Connection", "close")]) + body)
            return
        conn.sendall(
            response_head(
                101,
                [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ws_accept(key))],
            )
        )
        frag_op, frag = None, bytearray()
        for _ in range(10_000_000):
            fin, opcode, masked, payload = _ws_read_frame(conn.read_exact)
            if not masked:
                conn.sendall(ws_frame(WS_CLOSE, struct.pack("!H", 1002), mask=False))
                return
            if opcode == WS_CLOSE:
                conn.sendall(ws_frame(WS_CLOSE, payload[:2], mask=False))
                _drain_and_close(conn.sock, 0.5)
                return
            if opcode == WS_PING:
                conn.sendall(ws_frame(WS_PONG, payload, mask=False))
                continue
            if opcode == WS_PONG:
                continue
            if opcode in (WS_TEXT, WS_BINARY):
                frag_op, frag = opcode, bytearray(payload)
            elif opcode == WS_CONT and frag_op is not None:
                frag += payload
            else:
                conn.sendall(ws_frame(WS_CLOSE, struct.pack("!H", 1002), mask=False))
                return
            if fin:
                conn.sendall(ws_frame(frag_op, bytes(frag), mask=False))
                with self.lock:
                    self.messages += 1
                frag_op, frag = None, bytearray()


# ---- UploadSink ------------------------------------------------------------------------------------


class UploadSink(_Server):
    """Reads request bodies of any size (Content-Length or chunked) streaming; answers JSON
    {"body_len", "sha256"}. `.bytes_in` is the body bytes read so far (all connections),
    `.results` the finished bodies, `.aborted` the connections that ended mid-body."""

    def __init__(self, host="127.0.0.1", read_delay=0.0):
        self.bytes_in = 0
        self.results = []
        self.aborted = 0
        self.read_delay = read_delay  # pause after each request head before reading its body
        super().__init__(host)

    def handle(self, conn):
        conn.record_limit = 64 * 1024
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            method, target, version, headers = conn.read_head()
            if self.read_delay and not self.sleep(self.read_delay):
                return
            if "100-continue" in header_tokens(headers, "expect") and version == "HTTP/1.1":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            h = hashlib.sha256()
            n = 0
            try:
                for piece in stream_body(conn, headers, version):
                    h.update(piece)
                    n += len(piece)
                    with self.lock:
                        self.bytes_in += len(piece)
            except _Closed:
                with self.lock:
                    self.aborted += 1
                raise
            self.count_request()
            result = {"body_len": n, "sha256": h.hexdigest()}
            with self.lock:
                self.results.append(result)
            body = json.dumps(result).encode()
            close = wants_close(version, headers)
            conn.sendall(
                response_head(200, [("Content-Type", "application/json"), ("Content-Length", len(body))] + ([("Connection", "close")] if close else []))
                + body
            )
            if close:
                _drain_and_close(conn.sock, 0.05)
                return
