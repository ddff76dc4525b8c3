"""limit_quota against the real binary: calendar quotas kept in LMDB under state_path.

Covered: exact counting across 2 workers, persistence across a restart and a reload, the reset at
a period boundary (with the test clock TOLLGATE_TEST_CLOCK_FILE), Retry-After, tiers from a
variable, the Kong and IETF headers and the warning threshold, dry run, several zones and their
inheritance, empty keys, config errors, a bounded store (fail=open and fail=closed), pruning of
ended periods, the state folder given to the workers' user, and kill -9 of a worker under load.
"""
import calendar
import http.client
import os
import pwd
import re
import signal
import subprocess
import threading
import time

import pytest

from harness import BINARY

FEB29 = calendar.timegm((2024, 2, 29, 23, 59, 50))  # 10 s before the end of a leap February


def compiled_modules():
    try:
        out = subprocess.run([BINARY, "-V"], capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout + out.stderr


pytestmark = pytest.mark.skipif(
    not re.search(r"\blimit_quota\b", compiled_modules()),
    reason="the limit_quota module is not compiled in",
)


def block(zones, locations, extra=""):
    return (
        "http {\n    include mime.types;\n%s\n"
        "    log_format q '$pid $status $limit_quota_status $limit_quota_remaining';\n"
        "    access_log logs/access.log q;\n%s\n"
        "    server {\n        listen 127.0.0.1:{port};\n        root {prefix}/html;\n%s\n    }\n}\n"
        % (zones, extra, locations)
    )


def make(factory, zones, locations, workers=1, clock=None, extra=""):
    t = factory(block(zones, locations, extra), workers=workers, main="state_path state;")
    os.makedirs(t.path("html"))
    with open(t.path("html", "ok.txt"), "w") as f:
        f.write("ok\n")
    os.chmod(t.path("html"), 0o755)
    os.chmod(t.path("html", "ok.txt"), 0o644)
    t.clock = t.path("clock")
    if clock is not None:
        set_clock(t, clock)
    return t


def set_clock(t, when):
    tmp = t.clock + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % when)
    os.chmod(tmp, 0o644)
    os.replace(tmp, t.clock)


def start(t):
    env = dict(os.environ, TOLLGATE_TEST_CLOCK_FILE=t.clock)
    return t.start(env=env)


def get(t, path="/ok.txt", headers=None, conn=None):
    """One GET: (status, headers dict with lower-case names, body text)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read().decode()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        if own:
            c.close()


def statuses(t, n, headers):
    return [get(t, headers=headers)[0] for _ in range(n)]


def wait_log(t, pattern, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, t.error_log())
        if m:
            return m
        time.sleep(0.05)
    return None


def access_lines(t, n, timeout=10.0):
    """The access log's lines without the pid, once it has `n` (the Log phase follows the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(t.path("logs", "access.log")) as f:
            lines = [line.split()[1:] for line in f]
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def reload_and_wait(t, workers=1):
    old = t.worker_pids()
    t.reload()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = t.worker_pids()
        if len(pids) == workers and not set(pids) & set(old):
            return pids
        time.sleep(0.05)
    raise AssertionError("the reload did not replace the workers")


DAY_ZONE = "    limit_quota_zone $http_x_key zone=q quota=%d period=day;\n"
LOC = "        location / { limit_quota zone=q; }\n"


def test_exact_across_two_workers(tollgate_factory):
    t = start(make(tollgate_factory, DAY_ZONE % 50, LOC, workers=2, clock=FEB29 - 3600))
    results = []
    lock = threading.Lock()

    def client():
        for _ in range(30):  # a fresh connection each: SO_REUSEPORT spreads them over workers
            s = get(t, headers={"X-Key": "shared"})[0]
            with lock:
                results.append(s)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert len(results) == 120
    assert results.count(200) == 50
    assert results.count(429) == 70
    access_lines(t, 120)
    with open(t.path("logs", "access.log")) as f:
        pids = {line.split()[0] for line in f if " 200 PASSED " in line}
    assert len(pids) == 2, "both workers admitted requests"


def test_headers_warning_and_retry_after(tollgate_factory):
    zones = (
        "    limit_quota_zone $http_x_key zone=daily quota=10 period=day;\n"
        "    limit_quota_zone $http_x_key zone=monthly quota=1000 period=month;\n"
    )
    loc = "        location / { limit_quota zone=daily; limit_quota zone=monthly; }\n"
    t = start(make(tollgate_factory, zones, loc, clock=FEB29))
    h = {"X-Key": "alice"}
    for i in range(1, 11):
        s, hd, _ = get(t, headers=h)
        assert s == 200
        assert hd["x-ratelimit-limit-day"] == "10"
        assert hd["x-ratelimit-remaining-day"] == str(10 - i)
        assert hd["x-ratelimit-reset-day"] == "10"
        assert hd["x-ratelimit-limit-month"] == "1000"
        assert hd["x-ratelimit-remaining-month"] == str(1000 - i)
        assert hd["x-ratelimit-reset-month"] == "10"  # Feb 29 is the last day of the month
        assert hd["ratelimit-policy"] == '"daily";q=10;w=86400, "monthly";q=1000;w=2505600'
        assert hd["ratelimit"] == '"daily";r=%d;t=10, "monthly";r=%d;t=10' % (10 - i, 1000 - i)
        if i < 8:
            assert "x-quota-warning" not in hd, i
        else:
            assert hd["x-quota-warning"] == '"daily";q=10;r=%d;t=10' % (10 - i)
    s, hd, body = get(t, headers=h)
    assert s == 429
    assert hd["retry-after"] == "10"
    assert hd["content-type"] == "application/json"
    assert '"error":"rate_limited"' in body and '"status":429' in body
    assert hd["x-ratelimit-remaining-day"] == "0"
    assert hd["x-ratelimit-remaining-month"] == "990"  # the refused request counted nowhere
    # A client that waits Retry-After then succeeds: March 1st, a new day and a new month.
    set_clock(t, FEB29 + int(hd["retry-after"]))
    s, hd, _ = get(t, headers=h)
    assert s == 200
    assert hd["x-ratelimit-remaining-day"] == "9"
    assert hd["x-ratelimit-remaining-month"] == "999"
    assert hd["ratelimit-policy"] == '"daily";q=10;w=86400, "monthly";q=1000;w=2678400'


def test_resets_at_the_minute_boundary(tollgate_factory):
    zones = "    limit_quota_zone $http_x_key zone=m quota=2 period=minute;\n"
    t = start(make(tollgate_factory, zones, "        location / { limit_quota zone=m; }\n",
                   clock=FEB29 - 50))  # 23:59:00 + 0 s
    h = {"X-Key": "k"}
    assert statuses(t, 2, h) == [200, 200]
    set_clock(t, FEB29 - 50 + 59)
    s, hd, _ = get(t, headers=h)
    assert s == 429 and hd["retry-after"] == "1"
    set_clock(t, FEB29 - 50 + 60)
    assert statuses(t, 3, h) == [200, 200, 429]


@pytest.mark.parametrize("sync", ["1s", "0"])  # fsync by timer, or at every commit
def test_survives_reload_and_restart(tollgate_factory, sync):
    zones = DAY_ZONE % 5 + "    limit_quota_sync %s;\n" % sync
    t = start(make(tollgate_factory, zones, LOC, workers=2, clock=FEB29 - 7200))
    h = {"X-Key": "persist"}
    assert statuses(t, 3, h) == [200] * 3
    reload_and_wait(t, workers=2)
    assert statuses(t, 1, h) == [200]
    t.stop()
    start(t)
    s, hd, _ = get(t, headers=h)
    assert s == 200 and hd["x-ratelimit-remaining-day"] == "0"
    assert get(t, headers=h)[0] == 429
    # The state folder and its files belong to the workers' user.
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody").pw_uid
        assert os.stat(t.path("state")).st_uid == nobody
        assert os.stat(t.path("state", "quota.mdb")).st_uid == nobody


def test_tiers_from_a_variable(tollgate_factory):
    zones = "    limit_quota_zone $http_x_key zone=tier quota=$http_x_quota period=day;\n"
    t = start(make(tollgate_factory, zones, "        location / { limit_quota zone=tier; }\n",
                   clock=FEB29 - 7200))
    assert statuses(t, 3, {"X-Key": "free", "X-Quota": "2"}) == [200, 200, 429]
    assert statuses(t, 5, {"X-Key": "pro", "X-Quota": "4"}) == [200] * 4 + [429]
    # Upgrading a consumer's tier raises its quota at once; the count is kept.
    s, hd, _ = get(t, headers={"X-Key": "free", "X-Quota": "3"})
    assert s == 200 and hd["x-ratelimit-remaining-day"] == "0"
    # No quota value: not counted; not a number: not counted, logged.
    s, hd, _ = get(t, headers={"X-Key": "x"})
    assert s == 200 and "x-ratelimit-limit-day" not in hd
    s, hd, _ = get(t, headers={"X-Key": "x", "X-Quota": "lots"})
    assert s == 200 and "x-ratelimit-limit-day" not in hd
    assert wait_log(t, r'limit_quota zone "tier".*not a number')


@pytest.mark.skipif(not re.search(r"\bmap\b", compiled_modules()), reason="no map module")
def test_tiers_from_a_map(tollgate_factory):
    zones = (
        "    map $http_x_tier $tier_quota { default 1; pro 3; enterprise \"\"; }\n"
        "    limit_quota_zone $http_x_key zone=tier quota=$tier_quota period=month;\n"
    )
    t = start(make(tollgate_factory, zones, "        location / { limit_quota zone=tier; }\n",
                   clock=FEB29 - 7200))
    assert statuses(t, 2, {"X-Key": "a"}) == [200, 429]
    assert statuses(t, 4, {"X-Key": "b", "X-Tier": "pro"}) == [200] * 3 + [429]
    assert statuses(t, 5, {"X-Key": "c", "X-Tier": "enterprise"}) == [200] * 5


def test_empty_key_dry_run_status_and_switches(tollgate_factory):
    loc = (
        "        location / { limit_quota zone=q; }\n"
        "        location /dry/ { limit_quota zone=q; limit_quota_dry_run on; }\n"
        "        location /quiet/ { limit_quota zone=q; limit_quota_headers off;\n"
        "                           limit_quota_warning off; limit_quota_status 503; }\n"
    )
    t = start(make(tollgate_factory, DAY_ZONE % 1, loc, clock=FEB29 - 7200))
    for d in ("dry", "quiet"):
        os.makedirs(t.path("html", d))
        with open(t.path("html", d, "ok.txt"), "w") as f:
            f.write("ok\n")
        os.chmod(t.path("html", d), 0o755)
        os.chmod(t.path("html", d, "ok.txt"), 0o644)
    # An empty key is never counted.
    for _ in range(3):
        s, hd, _ = get(t)
        assert s == 200 and "ratelimit" not in hd
    assert get(t, headers={"X-Key": "k"})[0] == 200
    s, hd, _ = get(t, "/dry/ok.txt", headers={"X-Key": "k"})
    assert s == 200 and hd["x-ratelimit-remaining-day"] == "0"
    s, hd, _ = get(t, "/quiet/ok.txt", headers={"X-Key": "k"})
    assert s == 503
    assert "ratelimit" not in hd and "x-ratelimit-limit-day" not in hd
    assert "x-quota-warning" not in hd
    assert hd["retry-after"] == "7210"  # 21:59:50 to midnight
    lines = access_lines(t, 6)
    assert ["200", "-", "-"] in lines
    assert ["200", "PASSED", "0"] in lines
    assert ["200", "REJECTED_DRY_RUN", "0"] in lines
    assert ["503", "REJECTED", "0"] in lines


def test_several_zones_and_inheritance(tollgate_factory):
    zones = (
        "    limit_quota_zone $http_x_key zone=per_key quota=3 period=day;\n"
        "    limit_quota_zone global zone=global quota=5 period=hour;\n"
        "    limit_quota_zone $http_x_key zone=other quota=1 period=day;\n"
    )
    loc = (
        "        limit_quota zone=per_key;\n"
        "        limit_quota zone=global;\n"
        "        location / { }\n"
        "        location /own/ { limit_quota zone=other; }\n"
    )
    t = start(make(tollgate_factory, zones, loc, clock=FEB29 - 7200))
    os.makedirs(t.path("html", "own"))
    with open(t.path("html", "own", "ok.txt"), "w") as f:
        f.write("ok\n")
    os.chmod(t.path("html", "own"), 0o755)
    os.chmod(t.path("html", "own", "ok.txt"), 0o644)
    assert statuses(t, 4, {"X-Key": "a"}) == [200, 200, 200, 429]  # per_key
    s, hd, _ = get(t, headers={"X-Key": "b"})
    assert s == 200
    assert hd["x-ratelimit-remaining-hour"] == "1" and hd["x-ratelimit-remaining-day"] == "2"
    assert statuses(t, 2, {"X-Key": "b"}) == [200, 429]  # global exhausted
    s, hd, _ = get(t, headers={"X-Key": "c"})
    assert s == 429 and hd["retry-after"] == "10"  # the hour ends at 22:00
    # A location with its own limit_quota does not inherit the server's.
    assert [get(t, "/own/ok.txt", headers={"X-Key": "a"})[0] for _ in range(2)] == [200, 429]


@pytest.mark.parametrize(
    "zones,locs,message",
    [
        ("", "location / { limit_quota zone=nope; }",
         r'tollgate\.conf:\d+: unknown limit_quota zone "nope"'),
        ("limit_quota_zone $uri zone=a period=day;", "",
         r'tollgate\.conf:\d+: "limit_quota_zone" must have "quota" parameter'),
        ("limit_quota_zone $uri zone=a quota=1 period=week;", "",
         r'tollgate\.conf:\d+: invalid value "period=week" in "limit_quota_zone"'),
        ("limit_quota_zone $uri zone=a:1k quota=1 period=day;", "",
         r'tollgate\.conf:\d+: invalid zone size "1k"'),
        ("limit_quota_zone $uri zone=a quota=x1 period=day;", "",
         r'tollgate\.conf:\d+: invalid value "quota=x1"'),
        ("limit_quota_zone $uri zone=a quota=1 period=day;\n"
         "limit_quota_zone $uri zone=a quota=2 period=day;", "",
         r'tollgate\.conf:\d+: limit_quota zone "a" is already defined'),
        ("limit_quota_zone $uri zone=a quota=1 period=day;",
         "location / { limit_quota zone=a; limit_quota zone=a; }",
         r'tollgate\.conf:\d+: limit_quota zone "a" is duplicate'),
        ("limit_quota_zone $uri zone=a quota=1 period=day;",
         "location / { limit_quota_status 200; }", r'tollgate\.conf:\d+: invalid value "200"'),
        ("limit_quota_zone $uri zone=a quota=1 period=day;",
         "location / { limit_quota_warning 120; }", r'tollgate\.conf:\d+: invalid value "120"'),
        ("limit_quota_zone $nosuchvar zone=a quota=1 period=day;", "",
         r"tollgate\.conf:\d+: .*nosuchvar"),
        ("limit_quota_zone $uri zone=a\"b quota=1 period=day;", "",
         r"tollgate\.conf:\d+: invalid value .*zone name"),
        ("limit_quota_zone $uri zone=a quota=1 period=day fail=maybe;", "",
         r'tollgate\.conf:\d+: invalid value "fail=maybe"'),
        ("limit_quota_sync soon;", "", r'tollgate\.conf:\d+: invalid value "soon"'),
    ],
)
def test_config_errors(tollgate_factory, zones, locs, message):
    t = make(tollgate_factory, "    " + zones, "        " + locs)
    code, err = t.test_config()
    assert code == 1
    assert re.search(message, err), err


def test_bounded_store_fail_open_and_closed(tollgate_factory):
    zones = (
        "    limit_quota_zone $http_x_key zone=small:128k quota=5 period=day path=small.mdb;\n"
        "    limit_quota_zone $http_x_key zone=strict:128k quota=5 period=day path=strict.mdb"
        " fail=closed;\n"
    )
    loc = (
        "        location / { limit_quota zone=small; }\n"
        "        location /strict/ { limit_quota zone=strict; }\n"
    )
    t = start(make(tollgate_factory, zones, loc, clock=FEB29 - 7200))
    os.makedirs(t.path("html", "strict"))
    with open(t.path("html", "strict", "ok.txt"), "w") as f:
        f.write("ok\n")
    os.chmod(t.path("html", "strict"), 0o755)
    os.chmod(t.path("html", "strict", "ok.txt"), 0o644)
    cap = (128 * 1024 - 64 * 1024) // 256
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    counted = uncounted = 0
    for i in range(cap + 40):
        s, hd, _ = get(t, headers={"X-Key": "key%d" % i}, conn=conn)
        assert s == 200
        if "x-ratelimit-limit-day" in hd:
            counted += 1
        else:
            uncounted += 1
    assert (counted, uncounted) == (cap, 40)
    # Keys counted before the store filled keep counting.
    s, hd, _ = get(t, headers={"X-Key": "key0"}, conn=conn)
    assert s == 200 and hd["x-ratelimit-remaining-day"] == "3"
    assert wait_log(t, r'limit_quota zone "small" .*the store is full')
    for i in range(cap):
        assert get(t, "/strict/ok.txt", headers={"X-Key": "key%d" % i}, conn=conn)[0] == 200
    s, _, body = get(t, "/strict/ok.txt", headers={"X-Key": "one-too-many"}, conn=conn)
    assert s == 503 and '"status":503' in body
    conn.close()
    assert os.path.getsize(t.path("state", "small.mdb")) <= 128 * 1024
    assert os.path.getsize(t.path("state", "strict.mdb")) <= 128 * 1024


def test_prunes_ended_periods(tollgate_factory):
    zones = "    limit_quota_zone $http_x_key zone=m quota=3 period=minute;\n"
    t = start(make(tollgate_factory, zones, "        location / { limit_quota zone=m; }\n",
                   clock=FEB29 - 50))
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    for i in range(100):
        assert get(t, headers={"X-Key": "k%d" % i}, conn=conn)[0] == 200
    conn.close()
    set_clock(t, FEB29 + 10)  # the next minute: every record has ended
    reload_and_wait(t)  # new workers prune at start (and every minute)
    assert wait_log(t, r"pruned 100 records of ended periods")
    assert statuses(t, 4, {"X-Key": "k0"}) == [200, 200, 200, 429]


def test_kill_a_worker_under_load(tollgate_factory):
    quota = 100000
    t = start(make(tollgate_factory, DAY_ZONE % quota, LOC, workers=2, clock=FEB29 - 7200))
    ok = [0]
    failed = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        for _ in range(150):
            if stop.is_set():
                break
            try:
                s = get(t, headers={"X-Key": "load"})[0]
            except (OSError, http.client.HTTPException):
                with lock:
                    failed[0] += 1
                continue
            with lock:
                if s == 200:
                    ok[0] += 1
                else:
                    failed[0] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for th in threads:
        th.start()
    victims = t.wait_workers(2)
    time.sleep(0.3)
    os.kill(victims[0], signal.SIGKILL)
    time.sleep(0.3)
    others = [p for p in t.worker_pids() if p != victims[0]]
    if others:
        os.kill(others[0], signal.SIGKILL)
    for th in threads:
        th.join(timeout=60)
    stop.set()
    t.wait_workers(2, exclude=victims)
    # Nobody is wedged: the respawned workers count on, exactly once per admitted request.
    s, hd, _ = get(t, headers={"X-Key": "load"})
    assert s == 200
    remaining = int(hd["x-ratelimit-remaining-day"])
    used = quota - remaining
    assert ok[0] + 1 <= used <= ok[0] + failed[0] + 1
    assert "exited on signal 9" in t.error_log()
    for _ in range(20):
        assert get(t, headers={"X-Key": "load"})[0] == 200


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (workers switch to nobody)")
def test_existing_folder_is_not_given_away(tollgate_factory):
    zones = (
        "    limit_quota_zone $http_x_key zone=q quota=1 period=day path={prefix}/taken/q.mdb;\n"
        "    limit_quota_zone $http_x_key zone=c quota=1 period=day path={prefix}/taken/c.mdb"
        " fail=closed;\n"
    )
    loc = "        location / { limit_quota zone=q; }\n        location /c/ { limit_quota zone=c; }\n"
    t = make(tollgate_factory, zones, loc, clock=FEB29 - 7200)
    os.makedirs(t.path("taken"))
    with open(t.path("taken", "someone-elses"), "w") as f:
        f.write("x")
    start(t)
    assert os.stat(t.path("taken")).st_uid == 0  # not empty: left as it was
    # The workers cannot open the store: fail=open admits uncounted, fail=closed answers 503.
    s, hd, _ = get(t, headers={"X-Key": "k"})
    assert s == 200 and "ratelimit" not in hd
    assert get(t, headers={"X-Key": "k"})[0] == 200
    assert get(t, "/c/ok.txt", headers={"X-Key": "k"})[0] == 503
    assert wait_log(t, r"mdb_env_open\(.*taken/q\.mdb.*\) failed")
