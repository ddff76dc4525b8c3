"""limit_req against the real binary: nginx's burst / nodelay / delay request by request, several
limits on one location, tiered rates from a variable, the sliding window, the headers on 200
and 429, Retry-After, a reload keeping the counters, config errors, exactness across 2 and 4
workers under load, a full zone evicting under 1,000,000 distinct keys, and kill -9 of a worker.

Content is served by static files or the proxy: `return` runs in the rewrite phase, before the
limits, exactly as in nginx.
"""
import os
import signal
import socket
import threading
import time

import pytest

from harness import Tollgate, server_block, wait_port
from upstreams import EchoUpstream

STATIC = """
        root {prefix}/html;
"""


def make(factory, body, zones="", workers=1, start=True, log_format=None):
    block = "http {\n    include mime.types;\n"
    if log_format:
        block += f"    log_format lr '{log_format}';\n    access_log logs/lr.log lr;\n"
    block += zones + "\n    server {\n        listen 127.0.0.1:{port};\n" + body + "\n    }\n}\n"
    t = factory(block, workers=workers)
    os.makedirs(t.path("html", "api"), exist_ok=True)
    for p in ("index.html", "api/index.html", "x.txt"):
        with open(t.path("html", p), "w") as f:
            f.write("hello\n")
    os.chmod(t.path("html"), 0o755)
    os.chmod(t.path("html", "api"), 0o755)
    if start:
        t.start()
    return t


class Client:
    """One keep-alive connection; request() returns (status, headers, body)."""

    def __init__(self, port, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.connect()

    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.f = self.sock.makefile("rb")

    def send(self, path="/", headers=None):
        h = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{h}\r\n".encode())

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("closed")
        status = int(line.split()[1])
        headers = {}
        while True:
            line = self.f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        body = self.f.read(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":  # keepalive_requests reached
            self.close()
            self.connect()
        return status, headers, body

    def request(self, path="/", headers=None):
        self.send(path, headers)
        return self.read()

    def close(self):
        self.f.close()
        self.sock.close()


def get(port, path="/", headers=None):
    c = Client(port)
    try:
        return c.request(path, headers)
    finally:
        c.close()


def statuses(port, n, path="/", headers=None):
    c = Client(port)
    try:
        return [c.request(path, headers)[0] for _ in range(n)]
    finally:
        c.close()


def log_lines(t, expect, timeout=10.0):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        try:
            with open(t.path("logs", "lr.log")) as f:
                lines = f.read().split()
        except FileNotFoundError:
            lines = []
        if len(lines) >= expect:
            break
        time.sleep(0.05)
    return lines


def concurrent(port, n, path="/", headers=None):
    """Sends n requests on n connections at once, then reads all; returns the statuses."""
    clients = [Client(port, timeout=15.0) for _ in range(n)]
    try:
        for c in clients:
            c.send(path, headers)
        return sorted(c.read()[0] for c in clients)
    finally:
        for c in clients:
            c.close()


# ---- nginx semantics, request by request --------------------------------------------------


def test_burst_nodelay(tollgate_factory):
    # rate 1r/m: nothing drains during the test. First + burst pass at once, the rest 429.
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one burst=3 nodelay; }" + STATIC,
        "limit_req_zone $remote_addr zone=one:64k rate=1r/m;",
        log_format="$limit_req_status",
    )
    assert statuses(t.port, 6) == [200, 200, 200, 200, 429, 429]
    assert log_lines(t, 6) == ["PASSED"] * 4 + ["REJECTED"] * 2


def test_burst_delays_excess(tollgate_factory):
    # rate 2r/s burst=3 (delay 0): the first passes, three are delayed, the rest rejected.
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one burst=3; }" + STATIC,
        "limit_req_zone $remote_addr zone=one:64k rate=2r/s;",
        log_format="$limit_req_status",
    )
    assert concurrent(t.port, 6) == [200, 200, 200, 200, 429, 429]
    assert sorted(log_lines(t, 6)) == ["DELAYED"] * 3 + ["PASSED"] + ["REJECTED"] * 2


def test_delay_n_serves_first_excess_at_once(tollgate_factory):
    # burst=3 delay=1: first + 1 undelayed, two delayed, the rest rejected.
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one burst=3 delay=1; }" + STATIC,
        "limit_req_zone $remote_addr zone=one:64k rate=2r/s;",
        log_format="$limit_req_status",
    )
    assert concurrent(t.port, 6) == [200, 200, 200, 200, 429, 429]
    assert sorted(log_lines(t, 6)) == ["DELAYED"] * 2 + ["PASSED"] * 2 + ["REJECTED"] * 2


def test_dry_run_and_status(tollgate_factory):
    t = make(
        tollgate_factory,
        """location /dry { limit_req zone=one; limit_req_dry_run on; }
           location / { limit_req zone=two; limit_req_status 503; }""" + STATIC,
        """limit_req_zone $remote_addr zone=one:64k rate=1r/m;
           limit_req_zone $remote_addr zone=two:64k rate=1r/m;""",
        log_format="$limit_req_status",
    )
    assert statuses(t.port, 3, "/dry/") == [404, 404, 404]  # dry run: served (no such file)
    assert log_lines(t, 3) == ["PASSED", "REJECTED_DRY_RUN", "REJECTED_DRY_RUN"]
    assert statuses(t.port, 2) == [200, 503]
    log = t.error_log()
    assert "[error]" in log and 'limiting requests, dry run, excess: 1.000 by zone "one"' in log
    assert 'limiting requests, excess: 1.000 by zone "two"' in log


def test_log_level_and_delays_one_level_lower(tollgate_factory):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one burst=1; limit_req_log_level warn; }" + STATIC,
        "limit_req_zone $remote_addr zone=one:64k rate=1r/s;",
    )
    assert concurrent(t.port, 3) == [200, 200, 429]
    log = t.error_log()
    assert any("[warn]" in l and "limiting requests, excess:" in l for l in log.splitlines())
    assert any("[notice]" in l and "delaying request, excess:" in l for l in log.splitlines())


def test_a_level_with_its_own_limits_does_not_inherit(tollgate_factory):
    t = make(
        tollgate_factory,
        """limit_req zone=a;
           location /api/ { limit_req zone=b burst=2 nodelay; }
           location / { }""" + STATIC,
        """limit_req_zone $remote_addr zone=a:64k rate=1r/m;
           limit_req_zone $remote_addr zone=b:64k rate=1r/m;""",
    )
    assert statuses(t.port, 2) == [200, 429]  # inherited from the server level: zone a
    assert statuses(t.port, 4, "/api/") == [200, 200, 200, 429]  # zone b only


def test_empty_key_is_not_limited_and_keys_are_composite(tollgate_factory):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one; }" + STATIC,
        'limit_req_zone "$http_x_api_key:$uri" zone=one:64k rate=1r/m;',
    )
    # "$http_x_api_key:$uri" is never empty; a key of its own per key and uri.
    assert statuses(t.port, 2, "/", {"X-Api-Key": "a"}) == [200, 429]
    assert statuses(t.port, 2, "/x.txt", {"X-Api-Key": "a"}) == [200, 429]
    assert statuses(t.port, 1, "/", {"X-Api-Key": "b"}) == [200]
    t2 = make(
        tollgate_factory,
        "location / { limit_req zone=k; }" + STATIC,
        "limit_req_zone $http_x_api_key zone=k:64k rate=1r/m;",
    )
    assert statuses(t2.port, 5) == [200] * 5  # no header: empty key, not limited


def test_several_limits_all_apply_and_rejects_consume_nothing(tollgate_factory):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=per_key; limit_req zone=global burst=2 nodelay; }" + STATIC,
        """limit_req_zone $http_x_key zone=per_key:64k rate=1r/m;
           limit_req_zone global zone=global:64k rate=1r/m;""",
    )
    assert get(t.port, "/", {"X-Key": "a"})[0] == 200
    assert get(t.port, "/", {"X-Key": "a"})[0] == 429  # per key; the global allowance is kept
    assert get(t.port, "/", {"X-Key": "b"})[0] == 200
    assert get(t.port, "/", {"X-Key": "c"})[0] == 200
    assert get(t.port, "/", {"X-Key": "d"})[0] == 429  # global: first + burst 2 used


def test_tiered_rate_from_a_variable(tollgate_factory):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=tier; }" + STATIC,
        "limit_req_zone $http_x_user zone=tier:64k rate=$http_x_tier_rate;",
    )
    assert statuses(t.port, 2, "/", {"X-User": "free", "X-Tier-Rate": "1r/m"}) == [200, 429]
    assert statuses(t.port, 3, "/", {"X-User": "ent"}) == [200] * 3  # empty rate: unlimited
    assert get(t.port, "/", {"X-User": "bad", "X-Tier-Rate": "lots"})[0] == 500
    assert "invalid rate" in t.error_log()


# ---- responses ----------------------------------------------------------------------------


def test_headers_on_200_and_429_static_and_proxied(tollgate_factory):
    with EchoUpstream() as up:
        t = make(
            tollgate_factory,
            f"""limit_req_headers both;
                location /api/ {{ limit_req zone=one burst=1 nodelay; proxy_pass http://{up.addr}; }}
                location / {{ limit_req zone=one burst=1 nodelay; limit_req zone=two burst=5 nodelay; }}"""
            + STATIC,
            """limit_req_zone $http_x_key zone=one:64k rate=6r/m;
               limit_req_zone $http_x_key zone=two:64k rate=60r/m;""",
        )
        s, h, _ = get(t.port, "/api/x", {"X-Key": "p"})
        assert s == 200
        assert h["x-ratelimit-limit"] == "6"
        assert h["x-ratelimit-remaining"] == "1"
        assert h["ratelimit-policy"] == '"one";q=6;w=60'
        assert h["ratelimit"] == '"one";r=1;t=0'
        s, h, _ = get(t.port, "/", {"X-Key": "s"})
        assert s == 200
        assert h["ratelimit-policy"] == '"one";q=6;w=60, "two";q=60;w=60'
        assert h["ratelimit"] == '"one";r=1;t=0, "two";r=5;t=0'
        s, h, _ = get(t.port, "/", {"X-Key": "s"})
        assert s == 200
        assert h["x-ratelimit-limit"] == "6"  # the most restrictive: one has 0 left
        assert h["x-ratelimit-remaining"] == "0"
        assert h["x-ratelimit-reset"] == "10"  # 1 request drains in 10 s at 6r/m
        s, h, body = get(t.port, "/", {"X-Key": "s"})
        assert s == 429
        assert b'"error":"rate_limited"' in body and h["content-type"] == "application/json"
        assert h["retry-after"] == "10"
        assert h["x-ratelimit-remaining"] == "0"
        assert h["ratelimit"].startswith('"one";r=0;t=')


def test_headers_off_by_default_and_x_only(tollgate_factory):
    t = make(
        tollgate_factory,
        "location /x/ { limit_req zone=one; limit_req_headers x; } location / { limit_req zone=one; }"
        + STATIC,
        "limit_req_zone $remote_addr zone=one:64k rate=100r/s;",
    )
    s, h, _ = get(t.port, "/")
    assert s == 200 and "x-ratelimit-limit" not in h and "ratelimit" not in h
    s, h, _ = get(t.port, "/x/")
    assert "x-ratelimit-limit" in h and "ratelimit-policy" not in h


def test_client_waiting_retry_after_succeeds(tollgate_factory):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one; }" + STATIC,
        "limit_req_zone $remote_addr zone=one:64k rate=1r/s;",
    )
    c = Client(t.port)
    assert c.request()[0] == 200
    s, h, _ = c.request()
    assert s == 429
    wait = int(h["retry-after"])
    assert 1 <= wait <= 2
    time.sleep(wait)
    assert c.request()[0] == 200
    c.close()


# ---- lifecycle ----------------------------------------------------------------------------


def test_reload_keeps_counters_and_a_new_key_gets_a_fresh_zone(tollgate_factory):
    zones = "limit_req_zone $remote_addr zone=one:64k rate=1r/m;"
    t = make(tollgate_factory, "location / { limit_req zone=one; }" + STATIC, zones, workers=2)
    assert statuses(t.port, 2) == [200, 429]
    old = t.worker_pids()
    t.reload()
    t.wait_workers(2, exclude=old)
    assert statuses(t.port, 2) == [429, 429]  # same zone: the count survived the reload
    t.write_config(
        "http {\n include mime.types;\n"
        ' limit_req_zone "$remote_addr:x" zone=one:64k rate=1r/m;\n'
        " server { listen 127.0.0.1:{port}; location / { limit_req zone=one;" + STATIC + " } }\n}\n"
    )
    old = t.worker_pids()
    t.reload()
    t.wait_workers(2, exclude=old)
    assert statuses(t.port, 2) == [200, 429]  # a changed key: a fresh zone


@pytest.mark.parametrize(
    "zones,body,message",
    [
        ("", "location / { limit_req zone=nope; }", 'unknown limit_req_zone "nope"'),
        (
            "limit_req_zone $remote_addr zone=one:4k rate=1r/s;",
            "",
            'zone "one" is too small',
        ),
        (
            "limit_req_zone $remote_addr zone=one:64k rate=1r/s;\n    limit_conn_zone $remote_addr zone=one:64k;",
            "",
            'zone "one" is already declared for limit_req',
        ),
        (
            "limit_req_zone $remote_addr zone=one:64k rate=1r/h;",
            "",
            'invalid rate "rate=1r/h"',
        ),
        (
            "limit_req_zone $remote_addr zone=one:64k rate=1r/s algorithm=sliding_window;",
            "location / { limit_req zone=one burst=5; }",
            "do not apply to the sliding_window",
        ),
        (
            "limit_req_zone $remote_addr zone=one:64k rate=1r/s;",
            "location / { limit_req zone=one; limit_req zone=one burst=2; }",
            'duplicate limit "one"',
        ),
    ],
)
def test_config_errors_name_file_and_line(tollgate_factory, zones, body, message):
    t = make(tollgate_factory, body, zones, start=False)
    rc, err = t.test_config()
    assert rc == 1
    assert message in err
    assert "tollgate.conf:" in err


# ---- sliding window -----------------------------------------------------------------------


def test_sliding_window_never_over_admits(tollgate_factory):
    limit = 20
    t = make(
        tollgate_factory,
        "location / { limit_req zone=sw; }" + STATIC,
        f"limit_req_zone $remote_addr zone=sw:64k rate={limit}r/s algorithm=sliding_window;",
        workers=2,
    )
    admitted = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 3.0

    def run():
        c = Client(t.port)
        for _ in range(20000):
            if time.monotonic() >= stop_at:
                break
            sent = time.monotonic()
            s = c.request()[0]
            got = time.monotonic()
            if s == 200:
                with lock:
                    admitted.append((sent, got))
            time.sleep(0.002)
        c.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=20)
    admitted.sort()
    # The server admitted each between send and receipt: any window of 1 s (less the slop of
    # those intervals) holds at most `limit`.
    slop = max(g - s for s, g in admitted)
    j = 0
    for i in range(len(admitted)):
        while admitted[i][0] - admitted[j][1] >= 1.0 - 2 * slop:
            j += 1
        assert i - j + 1 <= limit, f"{i - j + 1} admitted within a window"
    assert len(admitted) >= 2 * limit  # and it admits (3 s at 20 r/s: about 60)


# ---- exact across workers -----------------------------------------------------------------


def load(port, seconds, threads=4, pause=0.003, headers=None, path="/"):
    """Bounded load over keep-alive connections (about 1,000 r/s with 4 threads).

    Returns (ok, rejected, other, send times of every request, sorted)."""
    counts = {"ok": 0, "rej": 0, "other": 0}
    sends = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run():
        ok = rej = other = 0
        mine = []
        c = Client(port)
        for _ in range(100000):
            if time.monotonic() >= stop_at:
                break
            mine.append(time.monotonic())
            try:
                s = c.request(path, headers)[0]
            except (ConnectionError, OSError):
                mine.pop()
                c.close()
                c = Client(port)
                continue
            if s == 200:
                ok += 1
            elif s == 429:
                rej += 1
            else:
                other += 1
            time.sleep(pause)
        c.close()
        with lock:
            counts["ok"] += ok
            counts["rej"] += rej
            counts["other"] += other
            sends.extend(mine)

    ths = [threading.Thread(target=run) for _ in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=seconds + 20)
    return counts["ok"], counts["rej"], counts["other"], sorted(sends)


def leaky_admits(sends, rate, burst):
    """nginx's leaky bucket (nodelay) replayed on the request times: what an exact limit admits.
    On this shared machine the client can stall for longer than the burst lasts (a stall
    loses allowance), so the expectation follows the load the server really saw."""
    admitted = 0
    excess = None
    last = 0.0
    for t in sends:
        if excess is None:
            excess, last, admitted = 0.0, t, 1
            continue
        e = max(0.0, excess - rate * (t - last)) + 1
        if e > burst:
            continue
        excess, last = e, t
        admitted += 1
    return admitted


@pytest.mark.parametrize("workers", [2, 4])
def test_exact_across_workers_under_load(tollgate_factory, workers):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one burst=20 nodelay; }" + STATIC,
        "limit_req_zone all zone=one:1m rate=100r/s;",
        workers=workers,
    )
    ok, rej, other, sends = load(t.port, 10.0)
    assert other == 0
    assert rej > ok  # the load really was above the limit
    ideal = 1 + 20 + 100 * (sends[-1] - sends[0])  # 1,000 + burst over 10 s of steady load
    expected = leaky_admits(sends, 100.0, 20)
    print(f"workers={workers} admitted={ok} replayed={expected} ideal={ideal:.0f} rejected={rej}")
    assert abs(ok - expected) <= 0.01 * expected + 2, (ok, expected, ideal, rej)


def test_full_zone_evicts_and_memory_stays_bounded(tollgate_factory):
    t = make(
        tollgate_factory,
        "keepalive_requests 100000; location / { limit_req zone=one; }" + STATIC,
        "limit_req_zone $arg_k zone=one:64k rate=1r/m;",
        workers=1,
    )
    pid = t.worker_pids()[0]

    def rss():
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def blast(start, count, batch=500):
        """Pipelines `count` requests with distinct keys; returns how many were answered 200."""
        s = socket.create_connection(("127.0.0.1", t.port), timeout=30)
        ok = answered = 0
        tail = b""
        n = start
        while n < start + count:
            k = min(batch, start + count - n)
            s.sendall(b"".join(b"GET /x.txt?k=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(n, n + k)))
            n += k
            while answered < n - start:
                b = s.recv(1 << 20)
                if not b:
                    raise ConnectionError("closed")
                data = tail + b
                answered += data.count(b"HTTP/1.1 ")
                ok += data.count(b"HTTP/1.1 200")
                tail = data[-11:]
                # a tail this short holds no whole status line, so nothing is counted twice
        s.close()
        return ok

    # 1,000,000 distinct keys, about 1,000 times the zone's capacity (half a minute on a shared
    # 2-core machine; fewer under the sanitizers). TOLLGATE_LIMIT_KEYS overrides the count.
    total = int(os.environ.get("TOLLGATE_LIMIT_KEYS", "1000000"))
    if os.environ.get("TOLLGATE_SANITIZED"):
        total = min(total, 100_000)
    start_rss = None
    done = 0
    deadline = time.monotonic() + 180
    while done < total and time.monotonic() < deadline:
        done += blast(done, 50_000)
        if start_rss is None:
            start_rss = rss()
    assert done == total
    # Every key was new (distinct), so every request passed; the zone stayed 64k.
    if not os.environ.get("TOLLGATE_SANITIZED"):
        assert rss() - start_rss < 8 * 1024, (start_rss, rss())
    # The oldest keys were evicted: key 0 passes again (a fresh state), a recent one does not.
    assert get(t.port, "/x.txt?k=0")[0] == 200
    assert get(t.port, f"/x.txt?k={total - 1}")[0] == 429


def test_kill_9_worker_under_load_never_wedges(tollgate_factory):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one burst=1000000 nodelay; }" + STATIC,
        "limit_req_zone $arg_k zone=one:64k rate=1000r/s;",
        workers=4,
    )
    stop = threading.Event()
    errors = []

    def hammer(i):
        n = 0
        while not stop.is_set() and n < 200000:
            try:
                c = Client(t.port, timeout=5)
                for _ in range(200):
                    if stop.is_set():
                        break
                    c.request(f"/x.txt?k={i}-{n % 50}")
                    n += 1
                c.close()
            except (ConnectionError, OSError):
                pass  # the killed worker's connections die with it

    ths = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for th in ths:
        th.start()
    try:
        for _ in range(3):
            time.sleep(0.3)
            victim = t.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            t.wait_workers(4, exclude=[victim])
    finally:
        time.sleep(0.3)
        stop.set()
        for th in ths:
            th.join(timeout=15)
    # Every worker answers (many fresh connections spread over all of them), quickly.
    for i in range(40):
        assert get(t.port, f"/x.txt?k=after{i}")[0] == 200


def test_delay_does_not_block_the_worker_and_a_leaving_client_is_499(tollgate_factory):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=one burst=5; }" + STATIC,
        "limit_req_zone $http_x_key zone=one:64k rate=1r/s;",
        log_format="$status:$limit_req_status",
    )
    assert get(t.port, "/", {"X-Key": "a"})[0] == 200  # starts the bucket
    first = [Client(t.port, timeout=15) for _ in range(3)]
    for c in first:
        c.send("/", {"X-Key": "a"})  # delayed about 1, 2 and 3 s
    # One worker: another key is answered while key a's last request still waits (2 s).
    assert get(t.port, "/", {"X-Key": "b"})[0] == 200
    last = first[-1]
    last.sock.setblocking(False)
    try:
        pending = last.sock.recv(1) == b""
    except BlockingIOError:
        pending = True
    last.sock.setblocking(True)
    statuses_a = []
    # The others answer 200 in turn; the last client leaves while delayed.
    last.close()
    for c in first[:-1]:
        statuses_a.append(c.read()[0])
        c.close()
    assert sorted(statuses_a) == [200, 200]
    lines = log_lines(t, 5)
    assert "499:DELAYED" in lines and "200:PASSED" in lines
    assert pending
    assert get(t.port, "/", {"X-Key": "c"})[0] == 200  # the worker is fine
