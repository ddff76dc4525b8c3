"""limit_req's cluster mode against the real binary and a real redis-server (the fixture in
tests/integration/redis_server.py): two tollgate instances sharing one limit, each fail mode
(open, closed, local) when Redis is killed or hangs and the recovery when it returns, the
headers and Retry-After, mixed local + Redis limits, config errors, and clients that leave
while their request waits for Redis (run also under ASan: no use-after-free).
"""
import re
import threading
import time

import pytest

from redis_server import redis_server  # noqa: F401  (fixture)
from test_limit_req import Client, concurrent, get, leaky_admits, load, log_lines, make, statuses

STATIC = """
        root {prefix}/html;
"""


def redis_keys(server, pattern="tollgate:limit_req:*"):
    return server.command("KEYS", pattern) or []


def wait_until(pred, timeout=10.0, step=0.05):
    """Polls `pred` (bounded); returns its last value."""
    deadline = time.monotonic() + timeout
    v = pred()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = pred()
    return v


def redis_zone(url, rate="1r/m", extra="", name="rz", key="$http_x_key"):
    return f"limit_req_zone {key} zone={name}:64k rate={rate} redis={url} {extra};"


def wait_connected(t, server, key="warmup"):
    """Until this instance's worker talks to Redis: a request with a fresh key leaves a key."""
    before = len(redis_keys(server))
    n = [0]

    def probe():
        n[0] += 1
        k = f"{key}-{n[0]}"
        get(t.port, "/", {"X-Key": k, "X-Tenant": k})
        return len(redis_keys(server)) > before

    assert wait_until(probe, timeout=10.0, step=0.1), t.error_log()[-2000:]


# ---- one limit shared by two instances ----------------------------------------------------


def test_two_instances_share_one_limit(tollgate_factory, redis_server):
    zones = redis_zone(redis_server.url, rate="100r/s", key="$http_x_tenant")
    body = "keepalive_requests 100000; location / { limit_req zone=rz burst=20 nodelay; }" + STATIC
    a = make(tollgate_factory, body, zones, workers=2)
    b = make(tollgate_factory, body, zones, workers=2)
    for t in (a, b):
        wait_connected(t, redis_server)
    results = {}

    def run(t):
        results[t.port] = load(t.port, 5.0, threads=2, headers={"X-Tenant": "secret-key"})

    ths = [threading.Thread(target=run, args=(t,)) for t in (a, b)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=40)
    ok = sum(r[0] for r in results.values())
    rej = sum(r[1] for r in results.values())
    other = sum(r[2] for r in results.values())
    sends = sorted(s for r in results.values() for s in r[3])
    assert other == 0
    assert rej > ok  # the load really was above the limit
    expected = leaky_admits(sends, 100.0, 20)
    print(f"two instances: admitted={ok} replayed={expected} rejected={rej}")
    assert abs(ok - expected) <= 0.02 * expected + 2, (ok, expected, rej)
    # Both admitted a share: the limit really is shared, not per instance.
    assert all(r[0] > 0 for r in results.values())
    # The key is stored hashed, never raw.
    keys = redis_keys(redis_server)
    assert keys and all("secret" not in k for k in keys)
    assert any(k.startswith("tollgate:limit_req:rz:lb:") for k in keys)


# ---- Redis away: fail modes and recovery ---------------------------------------------------


@pytest.mark.parametrize("mode", ["open", "closed", "local"])
def test_redis_killed_fail_mode_then_recovery(tollgate_factory, redis_server, mode):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=rz; }" + STATIC,
        redis_zone(redis_server.url, extra=f"redis_fail={mode} redis_timeout=200ms"),
        log_format="$status:$limit_req_status",
    )
    wait_connected(t, redis_server)
    assert statuses(t.port, 2, "/", {"X-Key": "k"}) == [200, 429]  # counted in Redis
    redis_server.kill()
    got = statuses(t.port, 3, "/", {"X-Key": "k"})
    if mode == "open":
        assert got == [200, 200, 200]
    elif mode == "closed":
        assert got == [503, 503, 503]
        status, headers, _ = get(t.port, "/", {"X-Key": "k"})
        assert status == 503 and headers["retry-after"] == "1"
    else:
        # This machine's own counters: the key is new to them.
        assert got == [200, 429, 429]
    assert "redis" in t.error_log()
    redis_server.start()
    # Recovery: the worker reconnects by itself and counts in Redis again (a fresh server).
    wait_connected(t, redis_server, key=f"back-{mode}")
    assert statuses(t.port, 2, "/", {"X-Key": "k"}) == [200, 429]


def test_hung_redis_times_out_into_the_fail_mode(tollgate_factory, redis_server):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=rz; }" + STATIC,
        redis_zone(redis_server.url, extra="redis_fail=closed redis_timeout=100ms"),
    )
    wait_connected(t, redis_server)
    redis_server.pause()
    try:
        assert get(t.port, "/", {"X-Key": "h"})[0] == 503  # the command timed out
        assert get(t.port, "/", {"X-Key": "h"})[0] == 503  # and the link is down meanwhile
    finally:
        redis_server.resume()
    wait_connected(t, redis_server, key="after-pause")
    assert statuses(t.port, 2, "/", {"X-Key": "h2"}) == [200, 429]


# ---- headers, Retry-After, mixed limits -----------------------------------------------------


def test_headers_and_retry_after_in_redis_mode(tollgate_factory, redis_server):
    zones = (
        redis_zone(redis_server.url, rate="2r/s")
        + "\n    "
        + redis_zone(redis_server.url, rate="3r/s", name="sw", extra="algorithm=sliding_window")
    )
    t = make(
        tollgate_factory,
        "limit_req_headers on;\n"
        "location / { limit_req zone=rz burst=3 nodelay; }\n"
        "location /api/ { limit_req zone=sw; }" + STATIC,
        zones,
    )
    wait_connected(t, redis_server)
    c = Client(t.port)
    seen = [c.request("/", {"X-Key": "hdr"}) for _ in range(5)]
    assert [s for s, _, _ in seen] == [200, 200, 200, 200, 429]
    assert [h["x-ratelimit-remaining"] for _, h, _ in seen] == ["3", "2", "1", "0", "0"]
    for _, h, _ in seen:
        assert h["x-ratelimit-limit"] == "2"
        assert h["ratelimit-policy"] == '"rz";q=2;w=1'
        assert h["ratelimit"].startswith('"rz";r=')
    status, h, body = seen[-1]
    assert b"429" in body or body.startswith(b"{")
    retry = int(h["retry-after"])
    assert 1 <= retry <= 2
    time.sleep(retry)
    assert c.request("/", {"X-Key": "hdr"})[0] == 200  # waiting Retry-After then succeeds
    # Sliding window in Redis: 3 per second, then 429 with the time until a sub-window leaves.
    sw = [c.request("/api/", {"X-Key": "hdr"}) for _ in range(4)]
    assert [s for s, _, _ in sw] == [200, 200, 200, 429]
    assert [h["x-ratelimit-remaining"] for _, h, _ in sw] == ["2", "1", "0", "0"]
    # The oldest sub-window (100 ms) leaves the window 1.0 to 1.1 s after it began.
    assert sw[-1][1]["retry-after"] in ("1", "2")
    c.close()
    assert any(k.startswith("tollgate:limit_req:sw:sw:") for k in redis_keys(redis_server))


@pytest.mark.parametrize(
    "limit,expect",
    [
        # burst=2: the first passes, the next two are delayed (0.5 s, 1 s), the fourth rejected.
        ("burst=2", {"200:PASSED": 1, "200:DELAYED": 2, "429:REJECTED": 1}),
        # delay=1: the first excess request is served at once, the second delayed.
        ("burst=2 delay=1", {"200:PASSED": 2, "200:DELAYED": 1, "429:REJECTED": 1}),
        ("burst=2 nodelay", {"200:PASSED": 3, "429:REJECTED": 1}),
    ],
)
def test_burst_delay_nodelay_as_the_local_path(tollgate_factory, redis_server, limit, expect):
    t = make(
        tollgate_factory,
        f"location / {{ limit_req zone=rz {limit}; }}" + STATIC,
        redis_zone(redis_server.url, rate="2r/s"),
        log_format="$status:$limit_req_status",
    )
    wait_connected(t, redis_server)
    # wait_connected's requests are logged too: count only what follows.
    before = len(log_lines(t, 1))
    assert concurrent(t.port, 4, "/", {"X-Key": "d"}) == [200, 200, 200, 429]
    lines = log_lines(t, before + 4)[before:]
    assert {k: lines.count(k) for k in set(lines)} == expect


def test_local_and_redis_limits_on_one_location(tollgate_factory, redis_server):
    zones = (
        "limit_req_zone $http_x_key zone=loc:64k rate=1r/m;\n    "
        + redis_zone(redis_server.url, rate="1r/m")
    )
    t = make(
        tollgate_factory,
        "limit_req_headers ietf;\nlocation / { limit_req zone=loc burst=1 nodelay; "
        "limit_req zone=rz burst=3 nodelay; }" + STATIC,
        zones,
    )
    wait_connected(t, redis_server)
    got = [get(t.port, "/", {"X-Key": "m"}) for _ in range(3)]
    assert [s for s, _, _ in got] == [200, 200, 429]
    assert got[0][1]["ratelimit-policy"] == '"loc";q=1;w=60, "rz";q=1;w=60'
    # The third was rejected by the local zone before Redis was asked: Redis counted two.
    key = [k for k in redis_keys(redis_server) if k.startswith("tollgate:limit_req:rz:")]
    counted = [k for k in key if int(redis_server.command("HGET", k, "e") or 0) >= 1000]
    assert len(counted) == 1
    assert 1000 <= int(redis_server.command("HGET", counted[0], "e")) < 2000


# ---- clients leaving mid-call ----------------------------------------------------------------


def test_clients_leaving_while_redis_answers_late(tollgate_factory, redis_server):
    t = make(
        tollgate_factory,
        "location / { limit_req zone=rz; }" + STATIC,
        redis_zone(redis_server.url, rate="1000r/s", extra="redis_fail=open redis_timeout=3s"),
        log_format="$status:$limit_req_status",
    )
    wait_connected(t, redis_server)
    pid = t.worker_pids()[0]
    redis_server.pause()
    try:
        leavers = [Client(t.port) for _ in range(20)]
        for i, c in enumerate(leavers):
            c.send("/", {"X-Key": f"l{i}"})
        time.sleep(0.3)  # the calls are in flight
        for c in leavers:
            c.close()
        time.sleep(0.3)  # the worker saw them leave
    finally:
        redis_server.resume()  # the late replies come for cancelled calls
    wait_connected(t, redis_server, key="after-leavers")
    assert t.worker_pids() == [pid]  # no crash
    # And a timed-out batch whose clients left after the timeout fired.
    redis_server.pause()
    try:
        more = [Client(t.port) for _ in range(5)]
        for i, c in enumerate(more):
            c.send("/", {"X-Key": f"m{i}"})
        for c in more:
            c.close()
    finally:
        redis_server.resume()
    wait_connected(t, redis_server, key="after-more")
    assert t.worker_pids() == [pid]
    assert get(t.port, "/", {"X-Key": "z"})[0] == 200


# ---- config errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zones,message",
    [
        ("limit_req_zone $remote_addr zone=z:64k rate=1r/s redis=http://h:1;", "invalid redis URL"),
        (
            "limit_req_zone $remote_addr zone=z:64k rate=1r/s redis=redis://:Secret-PW@h:99999;",
            "invalid redis URL",
        ),
        (
            "limit_req_zone $remote_addr zone=z:64k rate=1r/s redis=redis://127.0.0.1 redis_fail=maybe;",
            'invalid redis_fail "maybe"',
        ),
        (
            "limit_req_zone $remote_addr zone=z:64k rate=1r/s redis=redis://127.0.0.1 redis_timeout=0;",
            "invalid redis_timeout",
        ),
        (
            "limit_req_zone $remote_addr zone=z:64k rate=1r/s redis_fail=open;",
            'need "redis=URL"',
        ),
    ],
)
def test_config_errors(tollgate_factory, zones, message):
    t = make(tollgate_factory, "location / { limit_req zone=z; }" + STATIC, zones, start=False)
    rc, err = t.test_config()
    assert rc == 1
    assert message in err
    assert re.search(r"tollgate\.conf:9: ", err), err  # the limit_req_zone line
    # A password in a bad URL is not echoed (temporary folder names are lowercase, no "-").
    assert "Secret-PW" not in err
