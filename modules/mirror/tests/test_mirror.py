"""Request mirroring (mirror, mirror_request_body, internal) against real upstreams.

The main location proxies to one EchoUpstream, the mirror location to another; tests check what
each really received and that the client only ever sees the main response.
"""
import hashlib
import http.client

from harness import server_block
from upstreams import EchoUpstream, RefusedPort, pattern_bytes, wait_until


def conf(main_port, mirror_port, main_extra="", mirror_target="", top=""):
    return server_block(
        f"""
        {top}
        location = /shadow {{ internal; proxy_pass http://127.0.0.1:{mirror_port}{mirror_target}; }}
        location /api/ {{ {main_extra} proxy_pass http://127.0.0.1:{main_port}; }}
        location /plain/ {{ proxy_pass http://127.0.0.1:{main_port}; }}
        location /off/ {{ mirror off; proxy_pass http://127.0.0.1:{main_port}; }}
        """
    )


def request(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def start(tollgate_factory, block):
    t = tollgate_factory(block)
    t.start()
    return t


def test_mirror_gets_copies(tollgate_factory):
    with EchoUpstream() as main, EchoUpstream() as shadow:
        t = start(tollgate_factory, conf(main.port, shadow.port, "mirror /shadow;"))
        for i in range(5):
            s, body = request(t.port, "POST", f"/api/x?i={i}", b"hello%d" % i, {"X-Test": "m"})
            assert s == 200 and b'"target": "/api/x?i=%d"' % i in body
        s, _ = request(t.port, "GET", "/api/get?a=b", None, {"X-Test": "g"})
        assert s == 200
        assert wait_until(lambda: len(shadow.log) == 6)
        log = list(shadow.log)
        posts = sorted((e for e in log if e["method"] == "POST"), key=lambda e: e["target"])
        for i, e in enumerate(posts):
            assert e["target"] == f"/api/x?i={i}"
            assert ["X-Test", "m"] in e["headers"]
            assert e["body_sha256"] == hashlib.sha256(b"hello%d" % i).hexdigest()
        gets = [e for e in log if e["method"] == "GET"]
        assert len(gets) == 1 and gets[0]["target"] == "/api/get?a=b" and gets[0]["body_len"] == 0
        assert len(main.log) == 6


def test_request_body_off(tollgate_factory):
    with EchoUpstream() as main, EchoUpstream() as shadow:
        t = start(tollgate_factory, conf(main.port, shadow.port, "mirror /shadow; mirror_request_body off;"))
        s, body = request(t.port, "POST", "/api/b", b"x" * 1000)
        assert s == 200
        assert wait_until(lambda: len(shadow.log) == 1)
        e = shadow.log[0]
        assert e["method"] == "POST" and e["body_len"] == 0
        assert main.log[0]["body_len"] == 1000


def test_off_and_inheritance(tollgate_factory):
    with EchoUpstream() as main, EchoUpstream() as shadow:
        t = start(tollgate_factory, conf(main.port, shadow.port, top="mirror /shadow;"))
        assert request(t.port, "GET", "/plain/a")[0] == 200  # inherited from the server
        assert request(t.port, "GET", "/off/a")[0] == 200  # mirror off
        assert wait_until(lambda: len(main.log) == 2)
        assert wait_until(lambda: len(shadow.log) == 1)
        assert request(t.port, "GET", "/plain/b")[0] == 200
        assert wait_until(lambda: len(shadow.log) == 2)
        assert [e["target"] for e in shadow.log] == ["/plain/a", "/plain/b"]


def test_sample_half(tollgate_factory):
    with EchoUpstream() as main, EchoUpstream() as shadow:
        t = start(tollgate_factory, conf(main.port, shadow.port, "mirror /shadow sample=50%;"))
        n = 200
        for i in range(n):
            assert request(t.port, "GET", f"/api/s{i}")[0] == 200
        assert wait_until(lambda: len(main.log) == n)
        # Let the mirrors in flight land: a last full mirror marks the end.
        t.write_config(conf(main.port, shadow.port, "mirror /shadow;"))
        t.reload()
        assert wait_until(lambda: request(t.port, "GET", "/api/end")[0] == 200 and
                          any(e["target"] == "/api/end" for e in shadow.log), timeout=10)
        got = sum(1 for e in shadow.log if e["target"].startswith("/api/s"))
        assert 40 <= got <= 160, got


def test_slow_mirror_does_not_delay_main(tollgate_factory):
    with EchoUpstream() as main, EchoUpstream() as shadow:
        t = start(tollgate_factory, conf(main.port, shadow.port, "mirror /shadow;", "/slow/5000"))
        for i in range(5):
            s, body = request(t.port, "POST", f"/api/q{i}", b"abc")
            assert s == 200
        # Every main response is in; the mirror received all copies and answers none yet
        # (it sleeps 5 s per request).
        assert wait_until(lambda: len(shadow.log) == 5)
        assert all(e["target"] == "/slow/5000" for e in shadow.log)
        assert len(main.log) == 5


def test_dead_mirror(tollgate_factory):
    with EchoUpstream() as main, RefusedPort() as dead:
        t = start(tollgate_factory, conf(main.port, dead.port, "mirror /shadow;"))
        for i in range(20):
            s, body = request(t.port, "POST", f"/api/d{i}", b"z" * 10)
            assert s == 200 and b'"body_len": 10' in body
        assert len(main.log) == 20


def test_large_body_not_mirrored(tollgate_factory):
    with EchoUpstream() as main, EchoUpstream() as shadow:
        t = start(tollgate_factory, conf(main.port, shadow.port, "mirror /shadow;"))
        big = pattern_bytes(300 * 1024)
        s, body = request(t.port, "POST", "/api/big", big)
        assert s == 200
        assert main.log[-1]["body_sha256"] == hashlib.sha256(big).hexdigest()
        s, _ = request(t.port, "GET", "/api/after")
        assert s == 200
        assert wait_until(lambda: len(shadow.log) == 1)
        assert shadow.log[0]["target"] == "/api/after"
        assert "not mirrored" in t.error_log()


def test_internal_location_404(tollgate_factory):
    with EchoUpstream() as main, EchoUpstream() as shadow:
        t = start(tollgate_factory, conf(main.port, shadow.port))
        assert request(t.port, "GET", "/shadow")[0] == 404
        assert len(shadow.log) == 0


def test_config_errors(tollgate_factory):
    cases = [
        ("mirror shadow;", "a mirror URI starts with"),
        ("mirror /s sample=200%;", "PERCENT"),
        ("mirror /s sample=10;", "sample=PERCENT"),
        ("mirror off; mirror /s;", "mixed"),
        ("mirror_request_body maybe;", "mirror_request_body"),
        ("location /x { internal x; }", "internal"),
    ]
    for line, msg in cases:
        t = tollgate_factory(server_block("        " + line))
        rc, err = t.test_config()
        assert rc != 0, line
        assert "tollgate.conf:" in err and msg in err, (line, err)


def test_graceful_stop_and_reload_do_not_wait_for_mirrors(tollgate_factory):
    import signal

    with EchoUpstream() as main, EchoUpstream() as shadow:
        t = start(tollgate_factory, conf(main.port, shadow.port, "mirror /shadow;", "/slow/60000"))
        old = t.worker_pids()
        assert request(t.port, "GET", "/api/r")[0] == 200
        assert wait_until(lambda: len(shadow.log) == 1)
        t.reload()  # the old worker drains: its mirror (sleeping 60 s) must not hold it
        t.wait_workers(1, exclude=old, timeout=20)
        assert wait_until(lambda: not set(old) & set(t.worker_pids()), timeout=20)
        assert request(t.port, "GET", "/api/s")[0] == 200
        assert wait_until(lambda: len(shadow.log) == 2)
        t.signal(signal.SIGQUIT)
        assert t.wait_exit(timeout=20) == 0
        assert "AddressSanitizer" not in t.stderr() and "signal 11" not in t.error_log()
