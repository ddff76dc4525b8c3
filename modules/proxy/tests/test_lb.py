"""Load balancing and resilience in `upstream` blocks against several real upstream servers, with
two workers wherever the state must be shared (least_conn counts, max_conns, circuit breakers,
health checks): weighted round robin over 10,000 requests, consistent-hash remapping across a
reload, least_conn, ip_hash, random, max_conns (with and without backup), the circuit breaker's
open -> half-open -> closed timeline seen by both workers, active health checks with a single
prober, and the config errors (file:line)."""
import os
import re
import signal
import threading
import time

import pytest

from test_proxy import Client, assert_error_json, fetch, req
from upstreams import EchoUpstream, RefusedPort, response_head, wait_until

# ---- helpers ---------------------------------------------------------------------------------------


class DelayEcho(EchoUpstream):
    """An EchoUpstream that waits `delay` seconds before each answer."""

    def __init__(self, delay):
        self.delay = delay
        super().__init__()

    def respond(self, conn, method, target, version, headers, info):
        if not self.sleep(self.delay):
            return False
        return super().respond(conn, method, target, version, headers, info)


class HealthEcho(EchoUpstream):
    """An EchoUpstream whose GET /health answers 200 or 503 as `healthy` says, and records when."""

    def __init__(self):
        self.healthy = True
        self.probes = []  # (monotonic time, healthy)
        super().__init__()

    def respond(self, conn, method, target, version, headers, info):
        if target == "/health":
            with self.lock:
                self.probes.append((time.monotonic(), self.healthy))
            status = 200 if self.healthy else 503
            conn.sendall(response_head(status, [("Content-Length", "2"), ("Connection", "close")]) + b"ok")
            return False
        return super().respond(conn, method, target, version, headers, info)

    def app_requests(self):
        return sum(1 for r in list(self.log) if r["target"] != "/health")

    def probes_since(self, t0):
        with self.lock:
            return [p for p in self.probes if p[0] >= t0]


def pipelined(t, targets, connections=8, batch=50, timeout=30.0):
    """Sends every target as a GET over `connections` keep-alive connections (pipelined in
    batches), in threads; returns the list of (target, status)."""
    out = []
    lock = threading.Lock()
    parts = [targets[i::connections] for i in range(connections)]

    def run(part):
        got = []
        # A connection serves keepalive_requests (1000) requests: 500 per connection.
        for j in range(0, len(part), 500):
            with Client(t.port, timeout=timeout) as c:
                seg = part[j : j + 500]
                for i in range(0, len(seg), batch):
                    chunk = seg[i : i + batch]
                    c.send(b"".join(req("GET", x) for x in chunk))
                    for x in chunk:
                        r = c.read_response(timeout=timeout)
                        got.append((x, r.status if r else None))
        with lock:
            out.extend(got)

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in parts if p]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=timeout * 2)
    return out


def read_log(t, name):
    try:
        with open(t.path("logs", name)) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def gateway_block(upstream, location="location / { proxy_pass http://pool; }", extra=""):
    return (
        "http {\n    include mime.types;\n"
        "    log_format lb '$pid $status $upstream_addr $request_uri';\n"
        "    access_log logs/lb.log lb;\n"
        f"{extra}\n"
        f"    {upstream}\n"
        "    server {\n        listen 127.0.0.1:{port};\n"
        f"        {location}\n    }}\n}}\n"
    )


@pytest.fixture
def lb(tollgate_factory):
    """lb(upstream_block, workers=2, ...) -> a started Tollgate with that upstream as `pool`."""

    def make(upstream, workers=2, **kw):
        t = tollgate_factory(gateway_block(upstream, **kw), workers=workers).start()
        t.initial_workers = t.wait_workers(workers)
        return t

    return make


@pytest.fixture
def ups():
    made = []

    def make(cls=EchoUpstream, *args):
        u = cls(*args)
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


def reload_and_wait(t, upstream, workers=2, **kw):
    old = t.worker_pids()
    t.write_config(gateway_block(upstream, **kw))
    t.reload()
    t.wait_workers(workers, exclude=old, timeout=15)
    # The old generation drains and exits; then only the new one answers.
    assert wait_until(lambda: not set(old) & set(t.worker_pids()), 15)


# ---- balancers ------------------------------------------------------------------------------------


def test_weighted_round_robin_distribution_over_10000_requests(lb, ups):
    us = [ups(), ups(), ups()]
    weights = [5, 3, 2]
    servers = " ".join(f"server 127.0.0.1:{u.port} weight={w};" for u, w in zip(us, weights))
    t = lb(f"upstream pool {{ {servers} keepalive 16; }}")
    got = pipelined(t, [f"/w/{i}" for i in range(10_000)])
    assert len(got) == 10_000 and all(s == 200 for _, s in got)
    total = sum(u.requests for u in us)
    assert total == 10_000
    for u, w in zip(us, weights):
        share = u.requests / total
        expected = w / sum(weights)
        assert abs(share - expected) <= 0.05 * expected, [x.requests for x in us]


def key_owners(us):
    """key -> index of the upstream that received /k?k=key (from their logs)."""
    owner = {}
    for i, u in enumerate(us):
        for target in u.targets():
            m = re.match(r"/k\?k=(\d+)$", target)
            if m:
                owner[m.group(1)] = i
    return owner


def test_consistent_hash_remaps_about_one_nth_when_a_server_is_removed(lb, ups):
    us = [ups() for _ in range(4)]
    n = len(us)
    keys = [str(i) for i in range(2000)]

    def block(servers):
        s = " ".join(f"server 127.0.0.1:{u.port};" for u in servers)
        return f"upstream pool {{ hash $arg_k consistent; {s} keepalive 8; }}"

    t = lb(block(us))
    got = pipelined(t, [f"/k?k={k}" for k in keys], connections=4)
    assert all(s == 200 for _, s in got)
    before = key_owners(us)
    assert len(before) == len(keys)
    # The same key always lands on the same server, from either worker.
    got = pipelined(t, [f"/k?k={k}" for k in keys[:200]], connections=4)
    for u in us:
        u.log.clear()
    removed = 2
    reload_and_wait(t, block([u for i, u in enumerate(us) if i != removed]))
    got = pipelined(t, [f"/k?k={k}" for k in keys], connections=4)
    assert all(s == 200 for _, s in got)
    after = key_owners(us)
    assert len(after) == len(keys) and us[removed].requests == sum(
        1 for x in before.values() if x == removed
    ) + sum(1 for k in keys[:200] if before[k] == removed)
    moved = [k for k in keys if before[k] != after[k]]
    # Only the removed server's keys move, and they are about 1/N of all.
    assert all(before[k] == removed for k in moved)
    assert len(moved) / len(keys) <= 1 / n + 0.05, len(moved)
    assert len(moved) == sum(1 for k in keys if before[k] == removed)


def test_plain_hash_and_ip_hash_are_sticky(lb, ups):
    a, b, c = ups(), ups(), ups()
    servers = f"server 127.0.0.1:{a.port}; server 127.0.0.1:{b.port}; server 127.0.0.1:{c.port};"
    t = lb(f"upstream pool {{ hash $arg_user; {servers} }}")
    for user in ("alice", "bob", "carol", "dave"):
        for i in range(3):
            assert fetch(t, "GET", f"/h?user={user}&i={i}").status == 200
    for user in ("alice", "bob", "carol", "dave"):
        holders = [u for u in (a, b, c) if any(f"user={user}&" in x for x in u.targets())]
        assert len(holders) == 1, user
    t2 = lb(f"upstream pool {{ ip_hash; {servers} }}")
    before = [u.requests for u in (a, b, c)]
    for i in range(12):
        assert fetch(t2, "GET", f"/ip/{i}").status == 200
    grew = [u.requests - x for u, x in zip((a, b, c), before)]
    assert sorted(grew) == [0, 0, 12]  # every request from 127.0.0.1 on one server


def test_random_spreads_and_random_two_avoids_the_busy_server(lb, ups):
    a, b = ups(), ups()
    t = lb(f"upstream pool {{ random; server 127.0.0.1:{a.port}; server 127.0.0.1:{b.port}; keepalive 4; }}")
    got = pipelined(t, [f"/r/{i}" for i in range(400)], connections=4)
    assert all(s == 200 for _, s in got)
    assert 120 <= a.requests <= 280 and a.requests + b.requests == 400


def test_least_conn_prefers_the_idle_server_when_another_is_slow(lb, ups):
    slow = ups(DelayEcho, 4.0)
    fast = ups()
    t = lb(f"upstream pool {{ least_conn; server 127.0.0.1:{slow.port}; server 127.0.0.1:{fast.port}; }}")
    # All idle: the tie goes to the first server, which is slow and now holds one request.
    held = []
    bg = threading.Thread(target=lambda: held.append(fetch(t, "GET", "/lc/held", timeout=20)), daemon=True)
    bg.start()
    assert wait_until(lambda: slow.requests == 1, 5)
    # Meanwhile every request, from either worker (fresh connections), goes to the idle server:
    # the count is shared, so the worker that did not send the slow request knows about it too.
    for i in range(20):
        assert fetch(t, "GET", f"/lc/{i}").status == 200
    still_busy = bg.is_alive()
    bg.join(timeout=20)
    assert held and held[0].status == 200
    assert still_busy, "the slow request ended before the check: the run proves nothing"
    assert (slow.requests, fast.requests) == (1, 20)
    served = {line.split()[0] for line in read_log(t, "lb.log") if "/lc/" in line and "held" not in line}
    assert len(served) == 2, "both workers should have served some of the 20"
    # With the slow request done, ties share again.
    for i in range(4):
        assert fetch(t, "GET", f"/lc/after/{i}").status == 200
    assert slow.requests > 1


def test_max_conns_is_exact_across_workers_then_502(lb, ups):
    slow = ups(DelayEcho, 1.5)
    t = lb(f"upstream pool {{ server 127.0.0.1:{slow.port} max_conns=2; }}")
    results = []
    lock = threading.Lock()

    def one(i):
        r = fetch(t, "GET", f"/mc/{i}", timeout=20)
        with lock:
            results.append(r)

    ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(6)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=30)
    statuses = sorted(r.status for r in results)
    assert statuses == [200, 200, 502, 502, 502, 502], statuses
    for r in results:
        if r.status == 502:
            assert_error_json(r, 502, "bad_gateway")
    assert slow.requests == 2
    assert fetch(t, "GET", "/mc/after").status == 200  # the slots came back


def test_a_worker_killed_mid_request_gives_its_counts_back(lb, ups):
    # max_conns=1 and one request in flight when its worker is SIGKILLed: the respawned worker
    # takes the dead one's counts off the server, so the slot is free again at once.
    up = ups()
    t = lb(f"upstream pool {{ server 127.0.0.1:{up.port} max_conns=1; }}", workers=1)
    stuck = threading.Thread(target=lambda: _ignore_errors(lambda: fetch(t, "GET", "/slow/30000", timeout=40)),
                             daemon=True)
    stuck.start()
    assert wait_until(lambda: len(up.log) == 1, timeout=10)
    assert fetch(t, "GET", "/busy").status == 502  # the one slot is taken
    (old,) = t.worker_pids()
    os.kill(old, signal.SIGKILL)
    t.wait_workers(1, exclude=[old])
    r = fetch(t, "GET", "/after", timeout=10)
    assert r.status == 200, r.status
    stuck.join(timeout=5)


def _ignore_errors(fn):
    try:
        fn()
    except OSError:
        pass


def test_max_conns_overflows_to_backup(lb, ups):
    slow = ups(DelayEcho, 1.5)
    backup = ups()
    t = lb(
        f"upstream pool {{ least_conn; server 127.0.0.1:{slow.port} max_conns=1; "
        f"server 127.0.0.1:{backup.port} backup; }}"
    )
    results = []
    ths = [threading.Thread(target=lambda i=i: results.append(fetch(t, "GET", f"/b/{i}", timeout=20))) for i in range(3)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=30)
    assert sorted(r.status for r in results) == [200, 200, 200]
    assert slow.requests == 1 and backup.requests == 2


# ---- circuit breaker ------------------------------------------------------------------------------


def pids_answering(t, status):
    return {line.split()[0] for line in read_log(t, "lb.log") if line.split()[1] == str(status)}


def test_circuit_breaker_open_half_open_closed_shared_by_both_workers(lb, ups):
    u = ups()
    t = lb(
        f"upstream pool {{ server 127.0.0.1:{u.port} max_fails=0; "
        "circuit_breaker failures=3 cooldown=3s probes=1 successes=2; }"
    )
    workers = {str(p) for p in t.initial_workers}
    # Three consecutive 5xx answers (each on a fresh connection: whichever worker) open it.
    for i in range(3):
        assert fetch(t, "GET", f"/fail/status/500?{i}").status == 500
    assert wait_until(lambda: "closed -> open" in t.error_log(), 5)
    # Open: both workers answer 503 + Retry-After without asking the upstream.
    for i in range(60):
        r = fetch(t, "GET", f"/open/{i}")
        if r.status != 503:
            break
        assert_error_json(r, 503, "service_unavailable")
        assert 1 <= int(r.header("retry-after")) <= 3
        if pids_answering(t, 503) >= workers:
            break
    assert pids_answering(t, 503) >= workers, read_log(t, "lb.log")
    assert u.requests == 3
    # After the cool-down one probe at a time goes through; two successes close it.
    assert wait_until(lambda: fetch(t, "GET", "/probe/1").status == 200, 10, 0.2)
    assert "open -> half-open" in t.error_log()
    assert fetch(t, "GET", "/probe/2").status == 200
    assert wait_until(lambda: "half-open -> closed" in t.error_log(), 5)
    log = t.error_log()
    assert log.index("closed -> open") < log.index("open -> half-open") < log.index("half-open -> closed")
    assert f'server 127.0.0.1:{u.port} in upstream "pool"' in log
    # Closed for everyone again.
    for i in range(10):
        assert fetch(t, "GET", f"/closed/{i}").status == 200


def test_circuit_breaker_failed_probe_reopens(lb, ups):
    refused = ups(RefusedPort)
    t = lb(f"upstream pool {{ server 127.0.0.1:{refused.port} max_fails=0; circuit_breaker failures=2 cooldown=1s; }}")
    for i in range(2):
        assert fetch(t, "GET", f"/x/{i}").status == 502
    assert fetch(t, "GET", "/x/open").status == 503
    assert wait_until(lambda: fetch(t, "GET", "/x/probe").status == 502, 10, 0.2)  # the probe fails
    assert wait_until(lambda: "half-open -> open" in t.error_log(), 5)
    assert fetch(t, "GET", "/x/reopened").status == 503


# ---- active health checks -------------------------------------------------------------------------


def test_health_checks_single_prober_transitions_seen_by_all_workers(lb, ups):
    a, b = ups(HealthEcho), ups(HealthEcho)
    t = lb(
        f"upstream pool {{ server 127.0.0.1:{a.port}; server 127.0.0.1:{b.port}; "
        "health_check uri=/health interval=500ms timeout=400ms fails=2 passes=2 status=200-299; }"
    )
    workers = {str(p) for p in t.initial_workers}
    # One prober for both workers: about one probe per interval per server, not two.
    assert wait_until(lambda: len(a.probes) >= 1, 5)
    t0 = time.monotonic()
    time.sleep(4.0)
    n = len(a.probes_since(t0))
    assert 4 <= n <= 10, n  # one prober: ~8 in 4 s; two would make ~16
    # A goes bad: after `fails` probes it is down, and no worker sends it requests.
    a.healthy = False
    flipped = time.monotonic()
    assert wait_until(lambda: "is down" in t.error_log(), 10)
    assert len([p for p in a.probes_since(flipped) if not p[1]]) >= 2
    before = a.app_requests()
    for i in range(30):
        assert fetch(t, "GET", f"/hc/{i}").status == 200
    assert a.app_requests() == before
    served = {line.split()[0] for line in read_log(t, "lb.log") if "/hc/" in line}
    assert served == workers, served  # both workers skipped it
    # Back only after `passes` good probes.
    a.healthy = True
    healed = time.monotonic()
    assert wait_until(lambda: "is up" in t.error_log(), 10)
    assert len([p for p in a.probes_since(healed) if p[1]]) >= 2
    assert wait_until(lambda: fetch(t, "GET", "/hc/again").status == 200 and a.app_requests() > before, 10, 0.05)
    log = t.error_log()
    assert f'upstream server 127.0.0.1:{a.port} in upstream "pool" is down' in log
    assert f'upstream server 127.0.0.1:{a.port} in upstream "pool" is up' in log


def test_health_prober_is_replaced_when_its_worker_dies(lb, ups):
    a = ups(HealthEcho)
    t = lb(f"upstream pool {{ server 127.0.0.1:{a.port}; health_check uri=/health interval=300ms; }}")
    assert wait_until(lambda: len(a.probes) >= 2, 5)
    m = re.search(r"\[\w+\] (\d+)#\d+: health checks of upstream \"pool\" run in this worker", t.error_log())
    prober = int(m.group(1)) if m else None
    if prober is None:  # the log line format does not carry the pid: find it by elimination
        pytest.skip("error log lines carry no pid")
    import os

    os.kill(prober, signal.SIGKILL)
    killed = time.monotonic()
    assert wait_until(lambda: len(a.probes_since(killed + 1.0)) >= 3, 10)


# ---- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "upstream, message",
    [
        ("upstream u { hash $uri; server 127.0.0.1:9; server 127.0.0.1:10 backup; }", 'does not support parameter "backup"'),
        ("upstream u { server 127.0.0.1:9; server 127.0.0.1:10 backup; ip_hash; }", 'does not support parameter "backup"'),
        ("upstream u { random two; server 127.0.0.1:9 backup; }", 'does not support parameter "backup"'),
        ("upstream u { hash $uri consistant; server 127.0.0.1:9; }", "invalid value"),
        ("upstream u { random three; server 127.0.0.1:9; }", "invalid value"),
        ("upstream u { random two most_conn; server 127.0.0.1:9; }", "invalid value"),
        ("upstream u { least_conn now; server 127.0.0.1:9; }", "invalid number of arguments"),
        ("upstream u { server 127.0.0.1:9 max_conns=x; }", "invalid value"),
        ("upstream u { server 127.0.0.1:9; circuit_breaker failures=0; }", "invalid value"),
        ("upstream u { server 127.0.0.1:9; circuit_breaker cooldown=soon; }", "invalid value"),
        ("upstream u { server 127.0.0.1:9; circuit_breaker tripwire=3; }", 'invalid parameter "tripwire=3"'),
        ("upstream u { server 127.0.0.1:9; circuit_breaker; circuit_breaker; }", "is duplicate"),
        ("upstream u { server 127.0.0.1:9; health_check interval=abc; }", "invalid value"),
        ("upstream u { server 127.0.0.1:9; health_check uri=health; }", "invalid value"),
        ("upstream u { server 127.0.0.1:9; health_check status=300-200; }", "invalid value"),
        ("upstream u { server 127.0.0.1:9; health_check fails=2000; }", "invalid value"),
        ("upstream u { server 127.0.0.1:9; health_check; health_check; }", "is duplicate"),
        ("upstream u { server 127.0.0.1:9; hash $nosuchvariable; }", "unknown"),
    ],
)
def test_invalid_balancer_config_is_rejected_with_file_and_line(tollgate_factory, upstream, message):
    block = "http {\n    %s\n    server { listen 127.0.0.1:{port};\n        location / { proxy_pass http://u; }\n    }\n}\n" % upstream
    code, err = tollgate_factory(block).test_config()
    assert code != 0, upstream
    assert re.search(r"tollgate\.conf:\d+: ", err), err
    assert message in err, err


def test_every_balancer_directive_is_accepted(tollgate_factory):
    block = (
        "http {\n"
        "    upstream a { least_conn; server 127.0.0.1:9 max_conns=10 weight=2; server 127.0.0.1:10 backup; "
        "circuit_breaker failures=5 cooldown=30s probes=1 successes=3; "
        "health_check uri=/health interval=5s timeout=2s fails=3 passes=2 status=200-399; }\n"
        "    upstream b { hash $request_uri consistent; server 127.0.0.1:9; server 127.0.0.1:10 down; }\n"
        "    upstream c { hash \"$http_x_user:$arg_k\"; server 127.0.0.1:9; }\n"
        "    upstream d { ip_hash; server 127.0.0.1:9; }\n"
        "    upstream e { random two least_conn; server 127.0.0.1:9; }\n"
        "    upstream f { random; server 127.0.0.1:9; circuit_breaker; health_check; }\n"
        "    server { listen 127.0.0.1:{port};\n        location / { proxy_pass http://a; }\n    }\n}\n"
    )
    code, err = tollgate_factory(block).test_config()
    assert code == 0, err


def test_redefined_balancing_method_is_a_warning_shown_by_test(tollgate_factory):
    # As nginx: the config is valid (the last method wins) and -t prints the warning.
    block = (
        "http {\n    upstream u { least_conn;\n        hash $remote_addr; server 127.0.0.1:9; }\n"
        "    server { listen 127.0.0.1:{port};\n        location / { proxy_pass http://u; }\n    }\n}\n"
    )
    code, err = tollgate_factory(block).test_config()
    assert code == 0, err
    assert re.search(r"tollgate: \[warn\] \S+tollgate\.conf:\d+: load balancing method redefined", err), err


# ---- state across reloads -------------------------------------------------------------------------


def test_shared_state_survives_a_reload_that_keeps_the_servers(lb, ups):
    u, other = ups(), ups()

    def block(weight, extra_server=""):
        return (
            f"upstream pool {{ server 127.0.0.1:{u.port} weight={weight} max_fails=0; {extra_server}"
            "circuit_breaker failures=2 cooldown=60s; }"
        )

    t = lb(block(1))
    for i in range(2):
        assert fetch(t, "GET", f"/s/status/500?{i}").status == 500
    assert fetch(t, "GET", "/s/open").status == 503
    # Same servers (a new weight): the new workers see the open breaker.
    reload_and_wait(t, block(5))
    r = fetch(t, "GET", "/s/after-reload")
    assert r.status == 503 and int(r.header("retry-after")) > 50
    assert u.requests == 2
    # Another server list: a fresh zone, everything closed.
    reload_and_wait(t, block(5, f"server 127.0.0.1:{other.port};"))
    statuses = {fetch(t, "GET", f"/s/fresh/{i}").status for i in range(4)}
    assert statuses == {200}
    assert u.requests > 2  # the breaker of the new zone is closed


# ---- traffic shifts ---------------------------------------------------------------------------


def test_shifting_weights_by_reload_under_load_drops_no_request(lb, ups):
    # Clients keep sending (keepalive and fresh connections) while two reloads move the weights
    # from 1:1 to 9:1 and back; every request must get its 200, and the new weights must show.
    a, b = ups(), ups()
    block = lambda wa, wb: (  # noqa: E731
        f"upstream pool {{ server 127.0.0.1:{a.port} weight={wa}; "
        f"server 127.0.0.1:{b.port} weight={wb}; keepalive 8; }}"
    )
    t = lb(block(1, 1))
    stop = threading.Event()
    results = []  # (status or None, error text)
    lock = threading.Lock()

    def client(i):
        n = 0
        while not stop.is_set() and n < 20000:  # bounded in count and (through stop) in time
            try:
                with Client(t.port, timeout=10) as c:
                    for _ in range(20):
                        c.send(req("GET", f"/shift/{i}/{n}"))
                        r = c.read_response(timeout=10)
                        with lock:
                            results.append((r.status if r else None, "" if r else str(c.ended)))
                        n += 1
                        closing = r is not None and any(
                            k.lower() == "connection" and v.lower() == "close" for k, v in r.headers
                        )  # a draining worker says so on its last response: reconnect
                        if r is None or closing or stop.is_set():
                            break
            except OSError as e:
                with lock:
                    results.append((None, repr(e)))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for th in threads:
        th.start()
    try:
        assert wait_until(lambda: len(results) > 200, 20)
        reload_and_wait(t, block(9, 1))
        before = len(a.log), len(b.log)
        assert wait_until(lambda: len(a.log) + len(b.log) - sum(before) > 1000, 30)
        moved_a, moved_b = len(a.log) - before[0], len(b.log) - before[1]
        reload_and_wait(t, block(1, 1))
        assert wait_until(lambda: len(results) > 3000, 30)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=30)
    failed = [r for r in results if r[0] != 200]
    assert not failed, (len(failed), len(results), failed[:5])
    # Between the reloads the new generation balanced 9:1 (old workers may still have finished
    # a few requests of the old generation's 1:1 on their way out).
    share = moved_a / (moved_a + moved_b)
    assert 0.8 < share < 0.95, (moved_a, moved_b)
