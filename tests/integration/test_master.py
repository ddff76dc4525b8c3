"""The master/worker lifecycle: workers, crashes and respawns, reloads (also under load),
graceful and fast shutdown, privileges, sd_notify and worker_connections."""
import os
import pwd
import re
import signal
import socket
import time

import pytest

from fake_notify import FakeNotify
from harness import free_port, raw_request, server_block, split_responses, wait_port
from loadgen import BackgroundLoad, read_response

PID_BODY = 'location / { return 200 "pid=$pid"; }'


def wait_for(predicate, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def get(port, path="/", timeout=3.0):
    data = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(), timeout=timeout)
    responses = split_responses(data)
    assert len(responses) == 1, data
    return responses[0]


def pid_of(body):
    return int(body.decode().rsplit("=", 1)[1])


def keepalive_conn(port, timeout=3.0):
    """A connection that has been served one keepalive request (so it is accepted and idle)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, headers, _ = read_response(s, reused=False)
    assert status == 200 and headers.get("connection", "").lower() != "close"
    return s


def proc_ids(pid):
    """(real uid, real gid) of a process from /proc."""
    uid = gid = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("Gid:"):
                gid = int(line.split()[1])
    return uid, gid


def refused(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


# ---- workers ----------------------------------------------------------------------------------


def test_two_workers_both_serve(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=2).start()
    workers = t.wait_workers(2)
    seen = {}
    deadline = time.monotonic() + 15
    for i in range(400):  # new connection per request
        if time.monotonic() > deadline:
            break
        status, _, body = get(t.port)
        assert status == 200
        seen[pid_of(body)] = seen.get(pid_of(body), 0) + 1
    assert set(seen) == set(workers), f"responses came from {seen}, workers are {workers}"


def test_kill9_worker_is_logged_and_replaced_within_1s(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=1).start()
    (old,) = t.wait_workers(1)
    assert pid_of(get(t.port)[2]) == old
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    served_by = None
    while time.monotonic() - killed_at < 1.0:
        try:
            status, _, body = get(t.port, timeout=max(0.05, 1.0 - (time.monotonic() - killed_at)))
        except (AssertionError, OSError):
            continue
        if status == 200 and pid_of(body) != old:
            served_by = pid_of(body)
            break
    elapsed = time.monotonic() - killed_at
    assert served_by is not None, f"no new worker served within 1 s ({elapsed:.2f}s)"
    assert t.worker_pids() == [served_by]
    assert wait_for(lambda: f"worker process {old} (slot 0) exited on signal 9" in t.error_log(), 2), t.error_log()


def test_respawn_keeps_the_slot_count(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=2).start()
    workers = t.wait_workers(2)
    killed = []
    for _ in range(2):
        for _slot in range(2):
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            workers = t.wait_workers(2, timeout=5, exclude=killed)
            assert not set(workers) & set(killed)
    time.sleep(0.3)  # nothing extra shows up late
    assert len(t.worker_pids()) == 2
    log = t.error_log()
    respawns = re.findall(r"respawned worker process (\d+) into slot (\d+)", log)
    assert len(respawns) == 4, log
    # Each slot got exactly its own replacements: both slots are still covered.
    slots_now = {int(s) for p, s in respawns if int(p) in workers}
    assert slots_now == {0, 1}, (respawns, workers)
    seen = set()
    for _ in range(200):
        seen.add(pid_of(get(t.port)[2]))
        if seen == set(workers):
            break
    assert seen == set(workers)


def test_startup_with_the_port_taken_fails(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY))
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", t.port))
        blocker.listen(1)
        t.start(wait=False)
        rc = t.wait_exit(10)
    assert rc == 1
    assert f"bind() to 127.0.0.1:{t.port} failed (Address already in use)" in t.error_log() + t.stderr()
    assert not os.path.exists(t.path("logs", "tollgate.pid"))


# ---- reload -----------------------------------------------------------------------------------


def gen_block(n):
    return server_block('location / { return 200 "gen-%d pid=$pid"; }' % n)


def test_reload_under_load_loses_nothing(tollgate_factory):
    """The key acceptance test: >= 20,000 requests while 10 HUPs land spread across the run."""
    total = 30000
    hups = 10
    t = tollgate_factory(gen_block(0), workers=2).start()
    t.wait_workers(2)
    load = BackgroundLoad(
        port=t.port, path="/", total=total, threads=8, duration=75.0, keepalive_batch=5, body_re=rb"gen-\d+ pid=\d+"
    ).start()
    latest = 0
    hup_times = []
    started = time.monotonic()
    for k in range(1, hups + 1):
        threshold = total * k // (hups + 1)
        while load.running() and load.result.sent < threshold:
            time.sleep(0.005)
        if not load.running():
            break
        if k % 2 == 1:  # a new body before every other HUP; the rest reload an unchanged file
            latest = k
            t.write_config(gen_block(k))
        t.reload()
        hup_times.append(time.monotonic() - started)
    r = load.join(90)
    assert r is not None and not load.running(), "the load did not finish"
    print(f"\nreload under load: {r.summary()}, HUPs at {[round(x, 2) for x in hup_times]}")
    assert len(hup_times) == hups, f"only {len(hup_times)} HUPs were sent before the load ended: {r.summary()}"
    assert r.failure_count == 0, f"{r.summary()}\n" + "\n".join(r.failures)
    assert r.sent == total and r.ok == total, r.summary()
    # Several generations answered, and the newest text is served now.
    gens = {int(b.split()[0][4:]) for b in r.bodies}
    assert len(gens) >= 3, gens
    assert wait_for(lambda: get(t.port)[2].startswith(b"gen-%d " % latest), 5)
    # The old generations are gone: two workers remain and none crashed.
    t.wait_workers(2, timeout=10)
    log = t.error_log()
    assert "exited on signal" not in log, log
    assert log.count("reconfiguring") == hups


def test_reload_with_a_broken_config_keeps_the_old_one(tollgate_factory):
    t = tollgate_factory(server_block('location / { return 200 "good"; }'), workers=2).start()
    workers = t.wait_workers(2)
    assert get(t.port)[2] == b"good"
    good_text = open(t.conf_path).read()
    broken = good_text.replace('return 200 "good";', 'return 200 "bad";\n        bogus_directive on;')
    with open(t.conf_path, "w") as f:
        f.write(broken)
    line = next(i for i, l in enumerate(broken.splitlines(), 1) if "bogus_directive" in l)
    t.reload()
    expected = f'{t.conf_path}:{line}: unknown directive "bogus_directive"'
    assert wait_for(lambda: expected in t.error_log(), 5), t.error_log()
    time.sleep(0.2)
    assert t.worker_pids() == workers
    for _ in range(20):
        assert get(t.port)[2] == b"good"
    assert t.proc.poll() is None
    # The master is still healthy: a good config loads.
    t.write_config(server_block('location / { return 200 "fixed"; }'))
    t.reload()
    assert wait_for(lambda: get(t.port)[2] == b"fixed", 5)


def test_reload_to_a_new_port(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY)).start()
    old_port = t.port
    new_port = free_port()
    t.write_config(server_block(PID_BODY).replace("{port}", str(new_port)))
    t.reload()
    assert wait_port(new_port, timeout=5)
    assert get(new_port)[0] == 200
    assert wait_for(lambda: refused(old_port), 5), "the old port still accepts connections"


# ---- shutdown ---------------------------------------------------------------------------------


def test_quit_lets_an_in_flight_request_finish(tollgate_factory):
    t = tollgate_factory(server_block('location / { return 200 "slow-ok"; }'), workers=1).start()
    s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: loc")
    time.sleep(0.2)  # the worker has accepted it and is reading the head
    t.signal(signal.SIGQUIT)
    time.sleep(0.5)
    assert t.proc.poll() is None, "the master exited with a request in flight"
    s.sendall(b"alhost\r\nUser-Agent: slow\r\n\r\n")
    status, headers, body = read_response(s, reused=False)
    assert status == 200 and body == b"slow-ok"
    assert headers.get("connection", "").lower() == "close", headers
    assert s.recv(1) == b"", "the connection stayed open after Connection: close"
    s.close()
    assert t.wait_exit(5) == 0
    assert not os.path.exists(t.path("logs", "tollgate.pid"))
    assert refused(t.port)


def test_quit_refuses_new_connections_while_draining(tollgate_factory):
    """As nginx: on QUIT the listening sockets close at once, even while old requests finish.
    A client connecting during the drain must be refused, not left hanging in a backlog that
    nobody accepts from."""
    t = tollgate_factory(server_block('location / { return 200 "ok"; }'), workers=1).start()
    s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: loc")  # keeps the worker (and so the master) alive
    time.sleep(0.2)
    t.signal(signal.SIGQUIT)
    time.sleep(0.5)
    try:
        assert t.proc.poll() is None
        with socket.socket() as late:
            late.settimeout(1)
            rc = late.connect_ex(("127.0.0.1", t.port))
            if rc == 0:
                late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                try:
                    got = late.recv(100)
                except socket.timeout:
                    got = b"<nothing within 1 s>"
                except ConnectionResetError:
                    got = b"<reset>"
                pytest.fail(f"a connection made after QUIT was accepted by the kernel and got {got!r}")
    finally:
        s.sendall(b"alhost\r\n\r\n")
        s.close()
    assert t.wait_exit(5) == 0


def test_quit_closes_idle_keepalive_connections_and_exits(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=2).start()
    conns = [keepalive_conn(t.port) for _ in range(4)]
    started = time.monotonic()
    t.signal(signal.SIGQUIT)
    assert t.wait_exit(5) == 0
    elapsed = time.monotonic() - started
    for c in conns:
        c.settimeout(1)
        assert c.recv(1) == b""  # an orderly close, not a reset
        c.close()
    assert elapsed < 3.0, f"QUIT with idle keepalive connections took {elapsed:.2f}s"


def test_term_exits_promptly_with_idle_keepalive_connections(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=2).start()
    conns = [keepalive_conn(t.port) for _ in range(6)]
    half_sent = socket.create_connection(("127.0.0.1", t.port), timeout=3)
    half_sent.sendall(b"GET / HTTP/1.1\r\n")
    time.sleep(0.1)
    started = time.monotonic()
    t.signal(signal.SIGTERM)
    rc = t.wait_exit(5)
    elapsed = time.monotonic() - started
    for c in conns + [half_sent]:
        c.close()
    assert rc == 0
    assert elapsed < 2.0, f"TERM took {elapsed:.2f}s"
    assert refused(t.port)


def test_worker_shutdown_timeout_bounds_a_graceful_stop(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=1, main="worker_shutdown_timeout 1s;").start()
    stuck = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    stuck.sendall(b"GET / HTTP/1.1\r\nHost: x")  # never finished
    time.sleep(0.2)
    started = time.monotonic()
    t.signal(signal.SIGQUIT)
    rc = t.wait_exit(5)
    elapsed = time.monotonic() - started
    assert rc == 0
    assert 0.8 <= elapsed < 2.5, f"graceful stop took {elapsed:.2f}s with worker_shutdown_timeout 1s"
    assert "worker_shutdown_timeout expired" in t.error_log()
    stuck.settimeout(1)
    try:
        assert stuck.recv(100) == b""
    except ConnectionResetError:
        pass
    stuck.close()


def test_term_after_quit_stops_at_once(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=2).start()
    stuck = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    stuck.sendall(b"GET / HTTP/1.1\r\nHost: x")
    time.sleep(0.2)
    t.signal(signal.SIGQUIT)
    time.sleep(0.5)
    assert t.proc.poll() is None  # still draining the stuck request
    started = time.monotonic()
    t.signal(signal.SIGTERM)
    rc = t.wait_exit(5)
    elapsed = time.monotonic() - started
    stuck.close()
    assert rc == 0
    assert elapsed < 2.0, f"TERM during a graceful stop took {elapsed:.2f}s"


# ---- privileges -------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="privilege dropping needs root")


@needs_root
def test_workers_run_as_nobody_master_as_root(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=2).start()
    nobody = pwd.getpwnam("nobody")
    assert proc_ids(t.proc.pid) == (0, 0)
    for w in t.wait_workers(2):
        assert proc_ids(w) == (nobody.pw_uid, nobody.pw_gid), w
    assert get(t.port)[0] == 200
    # Reloaded and respawned workers drop privileges too.
    old = t.worker_pids()
    t.reload()

    def replaced():
        pids = t.worker_pids()
        return pids if len(pids) == 2 and not set(pids) & set(old) else None

    new = wait_for(replaced, 5)
    assert new, t.worker_pids()
    for w in new:
        assert proc_ids(w) == (nobody.pw_uid, nobody.pw_gid), w
    os.kill(new[0], signal.SIGKILL)
    for w in t.wait_workers(2, exclude=(new[0],)):
        assert proc_ids(w)[0] == nobody.pw_uid


@needs_root
def test_user_root_keeps_workers_root(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=2, main="user root;").start()
    for w in t.wait_workers(2):
        assert proc_ids(w) == (0, 0), w
    assert get(t.port)[0] == 200


# ---- sd_notify --------------------------------------------------------------------------------


def test_sd_notify_lifecycle(tollgate_factory):
    notify = FakeNotify()
    try:
        t = tollgate_factory(server_block(PID_BODY), workers=1)
        t.start(env=notify.env())
        i = notify.wait_for("READY", "1")
        assert notify.snapshot()[i].get("MAINPID") in (None, str(t.proc.pid))
        assert not any("RELOADING" in m or "STOPPING" in m for m in notify.snapshot()[: i + 1])

        t.reload()
        j = notify.wait_for("RELOADING", "1", start=i + 1)
        assert "MONOTONIC_USEC" in notify.snapshot()[j]  # systemd's Type=notify-reload requires it
        k = notify.wait_for("READY", "1", start=j + 1)

        # A failed reload still ends with READY=1 (the old configuration serves on).
        with open(t.conf_path, "a") as f:
            f.write("bogus;\n")
        t.reload()
        j = notify.wait_for("RELOADING", "1", start=k + 1)
        k = notify.wait_for("READY", "1", start=j + 1)

        t.signal(signal.SIGQUIT)
        notify.wait_for("STOPPING", "1", start=k + 1)
        assert t.wait_exit(5) == 0
    finally:
        notify.close()


def test_no_notify_socket_no_problem(tollgate_factory):
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    t = tollgate_factory(server_block(PID_BODY)).start(env=env)
    t.reload()
    time.sleep(0.3)
    assert get(t.port)[0] == 200


# ---- worker_connections -----------------------------------------------------------------------


def test_worker_connections_limit_queues_the_next_connection(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=1, events="worker_connections 2;").start()
    c1 = keepalive_conn(t.port)
    c2 = keepalive_conn(t.port)
    c3 = socket.create_connection(("127.0.0.1", t.port), timeout=3)
    try:
        c3.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        c3.settimeout(0.7)
        try:
            early = c3.recv(100)
        except socket.timeout:
            early = None
        assert early is None, f"the third connection was answered or closed while two were open: {early!r}"
        c1.close()
        c3.settimeout(3)
        started = time.monotonic()
        status, _, body = read_response(c3, reused=False)
        assert status == 200 and body.startswith(b"pid=")
        assert time.monotonic() - started < 2
        # c2 still works: nothing was dropped to make room.
        c2.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(c2, reused=True)[0] == 200
    finally:
        for c in (c1, c2, c3):
            c.close()
    assert "worker_connections are not enough" in t.error_log()


def test_reload_changing_worker_processes_under_load(tollgate_factory):
    """Reloads that shrink and grow worker_processes (2 -> 1 -> 2 ...) lose no connection: a
    connection the kernel already queued on a listening socket must still be answered."""
    total = 20000
    t = tollgate_factory(gen_block(0), workers=2).start()
    t.wait_workers(2)
    load = BackgroundLoad(
        port=t.port, total=total, threads=8, duration=60.0, keepalive_batch=2, body_re=rb"gen-\d+ pid=\d+"
    ).start()
    counts = [1, 2] * 5
    for k, n in enumerate(counts, 1):
        threshold = total * k // (len(counts) + 1)
        while load.running() and load.result.sent < threshold:
            time.sleep(0.005)
        if not load.running():
            break
        t.workers = n
        t.write_config(gen_block(k))
        t.reload()
    r = load.join(70)
    print(f"\nworker_processes reloads under load: {r.summary()}")
    assert r.failure_count == 0, f"{r.summary()}\n" + "\n".join(r.failures)
    assert r.ok == total
    t.wait_workers(2, timeout=10)


def test_reload_drains_idle_keepalive_connections_gracefully(tollgate_factory):
    t = tollgate_factory(server_block(PID_BODY), workers=1).start()
    (old,) = t.wait_workers(1)
    used = keepalive_conn(t.port)  # will send a request during the old worker's grace period
    idle = keepalive_conn(t.port)  # will stay idle
    t.reload()
    wait_for(lambda: len([p for p in t.worker_pids() if p != old]) == 1, 5)
    time.sleep(0.2)
    # A request within the grace period is served by the old worker, which then closes.
    used.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, headers, body = read_response(used, reused=True)
    assert status == 200 and pid_of(body) == old
    assert headers.get("connection", "").lower() == "close", headers
    assert used.recv(1) == b""
    used.close()
    # The idle one is closed in an orderly way (FIN, not RST) after the grace period.
    idle.settimeout(5)
    started = time.monotonic()
    assert idle.recv(1) == b""
    assert time.monotonic() - started < 3
    idle.close()
    # With its connections gone the old worker exits.
    assert wait_for(lambda: old not in t.worker_pids(), 2), t.worker_pids()
    assert pid_of(get(t.port)[2]) != old


@pytest.mark.parametrize("new_workers", [2, 1], ids=["same-count-control", "shrink-to-1"])
def test_reload_keeps_queued_connections(tollgate_factory, new_workers):
    """The deterministic form of the test above. With worker_connections 1 each old worker holds
    one keepalive connection, so further connections wait in the kernel queue of whichever
    per-slot listening socket they were hashed to. A reload to worker_processes 1 must still
    answer every one of them: a queued connection is not the client's fault. (The 2 -> 2 case is
    the control.)"""
    t = tollgate_factory(gen_block(0), workers=2, events="worker_connections 1;").start()
    t.wait_workers(2)
    conns = []
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", t.port), timeout=5)
        c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        conns.append(c)
    time.sleep(0.3)
    # Exactly one connection per worker is being served; the rest wait.
    served = []
    for c in conns:
        c.settimeout(0.05)
        try:
            if c.recv(1, socket.MSG_PEEK):
                served.append(c)
        except socket.timeout:
            pass
    assert len(served) == 2, f"{len(served)} connections were answered with worker_connections 1 x 2 workers"
    t.workers = new_workers
    t.events = "worker_connections 64;"
    t.write_config(gen_block(1))
    t.reload()
    failures = []
    for i, c in enumerate(conns):
        c.settimeout(5)
        try:
            status, _, body = read_response(c, reused=False)
            if status != 200:
                failures.append(f"connection {i}: status {status}")
        except Exception as e:  # a reset or EOF is the bug this test is about
            failures.append(f"connection {i}: {type(e).__name__}: {e}")
        finally:
            c.close()
    assert not failures, "\n".join(failures)


@needs_root
def test_unknown_user_never_leaves_workers_running_as_root(tollgate_factory):
    """A typo in `user` must not silently run the workers as root: nginx refuses to start."""
    t = tollgate_factory(server_block(PID_BODY), workers=2, main="user tollgate-no-such-user;")
    t.start(wait=False)
    try:
        rc = t.wait_exit(1.5)
    except Exception:
        rc = None
    if rc is None:  # still running: then no worker may be root
        assert wait_port(t.port, timeout=5)
        roots = [w for w in t.wait_workers(2) if proc_ids(w)[0] == 0]
        assert not roots, f"workers {roots} run as root although `user tollgate-no-such-user;` is configured"
    else:
        assert rc != 0
        assert 'getpwnam("tollgate-no-such-user") failed' in t.error_log() + t.stderr()
