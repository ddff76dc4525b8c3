"""Retries on the next upstream (proxy_next_upstream, _tries, _timeout, _backoff, retry_budget)
against real upstream servers that fail in each way: connection refused, reset, a response
that never comes (timeout), 502/503, an invalid head. The servers record every request's
arrival time, method and body hash, so the tests count what really reached each upstream."""
import hashlib
import http.client
import socket
import struct
import time

import pytest

from harness import server_block
from upstreams import RefusedPort, _Server, response_head, stream_body

BODY = b"retry me " * 1000  # 9 KB: kept for replay


class Flaky(_Server):
    """An upstream that fails the same way on every request:
    ok | status:N | reset (RST after reading the request) | hang (never answers) | garbage."""

    def __init__(self, mode, host="127.0.0.1"):
        self.mode = mode
        self.hits = []  # (time.monotonic(), method, body sha256, body length)
        super().__init__(host)

    def handle(self, conn):
        for _ in range(10_000):
            method, target, version, headers = conn.read_head()
            h = hashlib.sha256()
            n = 0
            for piece in stream_body(conn, headers, version):
                h.update(piece)
                n += len(piece)
            with self.lock:
                self.hits.append((time.monotonic(), method, h.hexdigest(), n))
            self.count_request()
            if self.mode == "reset":
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if self.mode == "hang":
                self.sleep(10)
                return
            if self.mode == "partial":  # a 200 head and part of the body, then a reset
                conn.sendall(response_head(200, [("Content-Length", 1000)]) + b"x" * 10)
                time.sleep(0.1)
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if self.mode == "garbage":
                conn.sendall(b"HTTP/1.1 2OO Nope\r\n\r\n")
                return
            status = int(self.mode.split(":")[1]) if self.mode.startswith("status:") else 200
            body = f"{self.mode} from {self.port}".encode()
            conn.sendall(response_head(status, [("Content-Length", len(body))]) + body)


def upstream(name, servers, extra=""):
    lines = "".join(f"server {s.addr if hasattr(s, 'addr') else s} max_fails=0;\n" for s in servers)
    return f"upstream {name} {{\n{lines}{extra}\n}}\n"


def addr_of(port_obj):
    return f"127.0.0.1:{port_obj.port}"


def request(t, path, method="GET", body=None, headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data


def http_block(upstreams, locations):
    return ("http {\n    include mime.types;\n" + upstreams +
            "    server {\n        listen 127.0.0.1:{port};\n" + locations + "\n    }\n}\n")


def start(tollgate_factory, upstreams, locations):
    t = tollgate_factory(http_block(upstreams, locations))
    t.start()
    return t


def hits(*servers):
    return sum(len(s.hits) for s in servers)


def test_refused_goes_to_next_server_and_off_does_not(tollgate_factory):
    with RefusedPort() as dead, Flaky("ok") as ok:
        ups = upstream("u", [addr_of(dead), ok])
        t = start(tollgate_factory, ups, """
            location /default { proxy_pass http://u; }
            location /off { proxy_next_upstream off; proxy_pass http://u; }
        """)
        for _ in range(4):
            status, body = request(t, "/default")
            assert status == 200 and body.startswith(b"ok from"), body
        assert hits(ok) == 4
        codes = [request(t, "/off")[0] for _ in range(4)]
        # Round robin sends half of them to the refused port, which is not retried now.
        assert codes.count(502) == 2 and codes.count(200) == 2, codes
        assert hits(ok) == 6


def test_reset_and_invalid_header(tollgate_factory):
    with Flaky("reset") as rst, Flaky("garbage") as bad, Flaky("ok") as ok:
        ups = upstream("u", [rst, ok]) + upstream("g", [bad, ok])
        t = start(tollgate_factory, ups, """
            location /reset { proxy_pass http://u; }
            location /garbage { proxy_pass http://g; }
            location /garbage_retry { proxy_next_upstream error invalid_header;
                                      proxy_pass http://g; }
        """)
        assert all(request(t, "/reset")[0] == 200 for _ in range(4))
        assert len(rst.hits) == 2 and len(ok.hits) == 4
        # invalid_header is not in the default: the garbage server's try ends in 502.
        codes = sorted(request(t, "/garbage")[0] for _ in range(2))
        assert codes == [200, 502], codes
        assert all(request(t, "/garbage_retry")[0] == 200 for _ in range(4))


def test_timeout_is_retried_by_default_and_not_without_it(tollgate_factory):
    with Flaky("hang") as slow, Flaky("ok") as ok:
        ups = upstream("u", [slow, ok])
        t = start(tollgate_factory, ups, """
            proxy_read_timeout 300ms;
            location /default { proxy_pass http://u; }
            location /error_only { proxy_next_upstream error; proxy_pass http://u; }
        """)
        assert [request(t, "/default")[0] for _ in range(2)] == [200, 200]
        assert len(slow.hits) == 1
        codes = sorted(request(t, "/error_only")[0] for _ in range(2))
        assert codes == [200, 504], codes


def test_status_conditions_and_pass_through_of_the_last_answer(tollgate_factory):
    with Flaky("status:502") as s502, Flaky("status:503") as s503, Flaky("ok") as ok:
        ups = upstream("u", [s502, s503, ok]) + upstream("bad", [s502, s503])
        t = start(tollgate_factory, ups, """
            location /plain { proxy_pass http://u; }
            location /retry { proxy_next_upstream error timeout http_502 http_503;
                              proxy_pass http://u; }
            location /allbad { proxy_next_upstream http_502 http_503; proxy_pass http://bad; }
        """)
        # Without http_5xx the upstream's own 502/503 reach the client, unretried.
        got = sorted(request(t, "/plain")[0] for _ in range(3))
        assert got == [200, 502, 503], got
        before = hits(s502, s503, ok)
        for _ in range(6):
            status, body = request(t, "/retry")
            assert status == 200 and body.startswith(b"ok from"), body
        assert len(ok.hits) == 1 + 6
        assert hits(s502, s503, ok) - before >= 6
        # When every server fails, the last server's answer is passed on (as nginx).
        status, body = request(t, "/allbad")
        assert status in (502, 503) and body.startswith(b"status:"), body
        status2, body2 = request(t, "/allbad")
        assert {status, status2} == {502, 503}


def test_retries_with_a_keepalive_pool(tollgate_factory):
    with Flaky("status:503") as bad, Flaky("ok") as ok:
        ups = upstream("u", [bad, ok], "keepalive 4;")
        t = start(tollgate_factory, ups, """
            location / { proxy_next_upstream error http_503 non_idempotent;
                         proxy_pass http://u; }
        """)
        c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
        for i in range(10):
            status, body = request(t, "/", "POST" if i % 2 else "GET", BODY, conn=c)
            assert status == 200 and body.startswith(b"ok from"), body
        c.close()
        assert len(ok.hits) == 10
        assert all(h[2] == hashlib.sha256(BODY).hexdigest() for h in ok.hits)
        assert ok.connections <= 2  # the pooled connection to the good server was reused


def test_nothing_is_retried_once_the_response_started(tollgate_factory):
    with Flaky("partial") as part, Flaky("ok") as ok:
        ups = upstream("u", [part, ok])
        t = start(tollgate_factory, ups, """
            location / { proxy_next_upstream error timeout invalid_header http_502;
                         proxy_pass http://u; }
        """)
        results = []
        for _ in range(2):
            c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
            c.request("GET", "/")
            r = c.getresponse()
            try:
                results.append((r.status, r.read()))
            except http.client.IncompleteRead as e:
                results.append((r.status, "truncated", len(e.partial)))
            c.close()
        # One went to the partial server: its 200 head was already sent, so the client gets a
        # truncated body (the connection closes), not a retry on the good server.
        assert (200, "truncated", 10) in results, results
        assert len(part.hits) == 1 and len(ok.hits) == 1


def test_4xx_conditions_do_not_mark_the_server_failed(tollgate_factory):
    with Flaky("status:404") as nf, Flaky("ok") as ok:
        ups = (f"upstream u {{ server {nf.addr} max_fails=1 fail_timeout=60s;"
               f" server {ok.addr} max_fails=0; }}\n")
        t = start(tollgate_factory, ups, """
            location / { proxy_next_upstream error http_404; proxy_pass http://u; }
        """)
        for _ in range(6):
            assert request(t, "/")[0] == 200
        # Round robin keeps choosing the 404 server: a 404 is not a failure (as nginx).
        assert len(nf.hits) == 3 and len(ok.hits) == 6


def test_tries_limit(tollgate_factory):
    servers = [Flaky("status:502") for _ in range(4)]
    try:
        ups = upstream("u", servers)
        t = start(tollgate_factory, ups, """
            location /two { proxy_next_upstream http_502; proxy_next_upstream_tries 2;
                            proxy_pass http://u; }
            location /all { proxy_next_upstream http_502; proxy_next_upstream_tries 0;
                            proxy_pass http://u; }
        """)
        assert request(t, "/two")[0] == 502
        assert hits(*servers) == 2
        assert request(t, "/all")[0] == 502
        assert hits(*servers) == 2 + 4
    finally:
        for s in servers:
            s.stop()


def test_next_upstream_timeout_limits_the_tries(tollgate_factory):
    servers = [Flaky("hang") for _ in range(5)]
    try:
        ups = upstream("u", servers)
        t = start(tollgate_factory, ups, """
            proxy_read_timeout 400ms;
            location / { proxy_next_upstream_timeout 1s; proxy_pass http://u; }
        """)
        assert request(t, "/")[0] == 504
        # Tries start at about 0, 0.4 and 0.8 s; one at 1.2 s would be past the limit.
        assert 1 <= hits(*servers) <= 3, hits(*servers)
    finally:
        for s in servers:
            s.stop()


def test_post_is_not_retried_once_sent_unless_non_idempotent(tollgate_factory):
    servers = [Flaky("status:502") for _ in range(3)]
    with RefusedPort() as dead, Flaky("ok") as ok:
        try:
            ups = upstream("bad", servers) + upstream("refused", [addr_of(dead), ok])
            t = start(tollgate_factory, ups, """
                location /safe { proxy_next_upstream error http_502; proxy_pass http://bad; }
                location /unsafe { proxy_next_upstream error http_502 non_idempotent;
                                   proxy_pass http://bad; }
                location /refused { proxy_pass http://refused; }
            """)
            assert request(t, "/safe", "POST", BODY)[0] == 502
            assert hits(*servers) == 1
            assert request(t, "/safe", "PATCH", BODY)[0] == 502
            assert hits(*servers) == 2
            assert request(t, "/safe", "LOCK", BODY)[0] == 502
            assert hits(*servers) == 3
            assert request(t, "/safe", "PUT", BODY)[0] == 502  # idempotent: every server
            assert hits(*servers) == 6
            assert request(t, "/unsafe", "POST", BODY)[0] == 502
            assert hits(*servers) == 9
            # A refused connect sent nothing: even a POST goes to the next server.
            for _ in range(2):
                assert request(t, "/refused", "POST", BODY)[0] == 200
            assert len(ok.hits) == 2
        finally:
            for s in servers:
                s.stop()


def test_body_is_replayed_unchanged_and_a_large_body_is_not_retried(tollgate_factory):
    with Flaky("status:503") as bad, Flaky("ok") as ok:
        ups = upstream("u", [bad, ok])
        t = start(tollgate_factory, ups, """
            client_max_body_size 10m;
            location / { proxy_next_upstream error http_503 non_idempotent; proxy_pass http://u; }
        """)
        want = hashlib.sha256(BODY).hexdigest()
        for _ in range(2):
            assert request(t, "/", "POST", BODY)[0] == 200
        assert [h[2] for h in ok.hits] == [want, want]
        assert [h[2] for h in bad.hits] == [want]

        # Chunked from the client: the retry re-frames the kept bytes.
        def chunks():
            for i in range(0, len(BODY), 1000):
                yield BODY[i:i + 1000]
        for _ in range(2):
            c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
            c.request("PUT", "/", body=chunks(), encode_chunked=True,
                      headers={"Transfer-Encoding": "chunked"})
            assert c.getresponse().status == 200
            c.close()
        assert [h[2] for h in ok.hits] == [want] * 4
        assert all(h[3] == len(BODY) for h in ok.hits + bad.hits)

        # 200 KB cannot be kept: once its bytes went up it is not retried (503 passed on).
        big = bytes(range(256)) * 800
        n_ok, n_bad = len(ok.hits), len(bad.hits)
        codes = sorted(request(t, "/", "PUT", big)[0] for _ in range(2))
        assert codes == [200, 503], codes
        assert len(ok.hits) == n_ok + 1 and len(bad.hits) == n_bad + 1


def test_backoff_gaps_grow(tollgate_factory):
    servers = [Flaky("status:502") for _ in range(4)]
    try:
        ups = upstream("u", servers)
        t = start(tollgate_factory, ups, """
            location /exp { proxy_next_upstream http_502;
                            proxy_next_upstream_backoff base=100ms cap=5s jitter=none;
                            proxy_pass http://u; }
            location /jitter { proxy_next_upstream http_502;
                               proxy_next_upstream_backoff base=20ms cap=200ms;
                               proxy_pass http://u; }
        """)
        for _ in range(2):
            for s in servers:
                s.hits.clear()
            assert request(t, "/exp")[0] == 502
            times = sorted(h[0] for s in servers for h in s.hits)
            assert len(times) == 4
            gaps = [b - a for a, b in zip(times, times[1:])]
            # base, 2·base, 4·base: each gap longer than the one before.
            assert gaps[0] < gaps[1] < gaps[2], gaps
        # Full jitter: still every server once, and an answer.
        for s in servers:
            s.hits.clear()
        assert request(t, "/jitter")[0] == 502
        assert hits(*servers) == 4
    finally:
        for s in servers:
            s.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_retry_budget_caps_amplification(tollgate_factory, workers):
    servers = [Flaky("status:503") for _ in range(4)]
    try:
        ups = upstream("open", servers) + upstream("budget", servers,
                                                   "retry_budget ratio=0.2 min=0/s window=60s;")
        t = tollgate_factory(http_block(ups, """
            proxy_next_upstream error timeout http_503;
            location /open { proxy_pass http://open; }
            location /budget { proxy_pass http://budget; }
        """), workers=workers)
        t.start()
        # With two workers, a new connection per request spreads them over both: the budget is
        # counted per worker, and the ratio holds for the sum.
        c = None if workers > 1 else http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
        n = 20
        for _ in range(n):
            assert request(t, "/open", conn=c)[0] == 503
        assert hits(*servers) == 4 * n  # every server, every time
        before = hits(*servers)
        n = 100
        deadline = time.monotonic() + 60
        for _ in range(n):
            assert request(t, "/budget", conn=c)[0] == 503
            assert time.monotonic() < deadline
        if c is not None:
            c.close()
        sent = hits(*servers) - before
        # At most 20% extra load (plus one per worker for rounding), every request tried once.
        assert n <= sent <= n * 1.2 + workers, sent
        assert sent >= n * 1.1, sent  # the budget does allow retries
    finally:
        for s in servers:
            s.stop()


def test_config_errors(tollgate_factory):
    bad = [
        ("location / { proxy_next_upstream error bogus; proxy_pass http://127.0.0.1:9; }",
         'invalid value "bogus" in "proxy_next_upstream" directive'),
        ("location / { proxy_next_upstream off error; proxy_pass http://127.0.0.1:9; }",
         '"off" cannot be combined'),
        ("location / { proxy_next_upstream_backoff cap=1s; proxy_pass http://127.0.0.1:9; }",
         "needs base=TIME"),
        ("location / { proxy_next_upstream_backoff base=2s cap=1s; proxy_pass http://127.0.0.1:9; }",
         "cap is below base"),
        ("location / { proxy_next_upstream_tries -1; proxy_pass http://127.0.0.1:9; }",
         "proxy_next_upstream_tries"),
    ]
    for loc, msg in bad:
        t = tollgate_factory(server_block(loc))
        rc, err = t.test_config()
        assert rc == 1 and msg in err and "tollgate.conf:" in err, err
    t = tollgate_factory(http_block("upstream u { server 127.0.0.1:9; retry_budget min=3/s; }\n",
                                    "location / { proxy_pass http://u; }"))
    rc, err = t.test_config()
    assert rc == 1 and "needs ratio=R" in err, err
