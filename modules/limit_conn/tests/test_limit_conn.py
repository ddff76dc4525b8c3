"""limit_conn against the real binary: concurrent requests per key, exact across 4 workers with an
upstream that never answers (each admitted request holds its slot), slots given back when the
request ends, status / dry run / $limit_conn_status, and config errors."""
import os
import socket
import time

import pytest

from upstreams import SlowUpstream, wait_until


def block(body, zones):
    return (
        "http {\n    include mime.types;\n    log_format lc '$limit_conn_status';\n"
        "    access_log logs/lc.log lc;\n"
        + zones
        + "\n    server {\n        listen 127.0.0.1:{port};\n"
        + body
        + "\n    }\n}\n"
    )


def open_requests(port, n, user):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"GET / HTTP/1.1\r\nHost: t\r\nX-User: {user}\r\n\r\n".encode())
        socks.append(s)
    return socks


def answered(socks, wait=2.0):
    """Statuses of the connections that answered within `wait` seconds; None for the others."""
    out = []
    deadline = time.monotonic() + wait
    for s in socks:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = s.recv(4096)
            out.append(int(data.split()[1]) if data else None)
        except socket.timeout:
            out.append(None)
    return out


def test_exact_across_workers_with_slow_upstream(tollgate_factory):
    with SlowUpstream() as up:
        t = tollgate_factory(
            block(
                f"location / {{ limit_conn c 3; proxy_pass http://{up.addr}; proxy_read_timeout 30s; }}",
                "limit_conn_zone $http_x_user zone=c:64k;",
            ),
            workers=4,
        ).start()
        socks = open_requests(t.port, 10, "u")
        try:
            assert wait_until(lambda: up.requests == 3, timeout=10)
            st = answered(socks)
            assert st.count(429) == 7 and st.count(None) == 3, st
            assert up.requests == 3
            # Another key has its own slots.
            other = open_requests(t.port, 1, "v")
            assert wait_until(lambda: up.requests == 4, timeout=10)
        finally:
            for s in socks:
                s.close()
        # The clients went away: their requests ended and gave their slots back.
        time.sleep(0.5)
        socks = open_requests(t.port, 4, "u")
        try:
            assert wait_until(lambda: up.requests == 7, timeout=10)
            st = answered(socks)
            assert st.count(429) == 1 and st.count(None) == 3, st
        finally:
            for s in socks + other:
                s.close()


def test_status_dry_run_and_variable(tollgate_factory, tmp_path):
    with SlowUpstream() as up:
        t = tollgate_factory(
            block(
                f"""location /dry {{ limit_conn c 1; limit_conn_dry_run on; proxy_pass http://{up.addr}; }}
                    location / {{ limit_conn c 1; limit_conn_status 503; proxy_pass http://{up.addr}; }}""",
                "limit_conn_zone $http_x_user zone=c:64k;",
            ),
        ).start()
        held = open_requests(t.port, 1, "a")
        try:
            assert wait_until(lambda: up.requests == 1, timeout=10)
            s = socket.create_connection(("127.0.0.1", t.port), timeout=10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-User: a\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 503")
            s.close()
            d = socket.create_connection(("127.0.0.1", t.port), timeout=10)
            d.sendall(b"GET /dry HTTP/1.1\r\nHost: t\r\nX-User: a\r\n\r\n")
            assert wait_until(lambda: up.requests == 2, timeout=10)  # dry run: proxied anyway
            d.close()
        finally:
            for x in held:
                x.close()

        def lines():
            try:
                with open(t.path("logs", "lc.log")) as f:
                    return f.read().split()
            except FileNotFoundError:
                return []

        assert wait_until(lambda: len(lines()) >= 3, timeout=10)
        assert sorted(lines()) == ["PASSED", "REJECTED", "REJECTED_DRY_RUN"]


@pytest.mark.parametrize(
    "zones,body,message",
    [
        ("", "location / { limit_conn nope 1; }", 'unknown limit_conn_zone "nope"'),
        ("limit_conn_zone $remote_addr zone=c:4k;", "", 'zone "c" is too small'),
        ("limit_conn_zone $remote_addr zone=c:64k;", "location / { limit_conn c 0; }",
         'invalid number of connections "0"'),
        ("limit_conn_zone $remote_addr zone=c:64k;\n    limit_req_zone $remote_addr zone=c:64k rate=1r/s;",
         "", 'zone "c" is already declared for limit_conn'),
    ],
)
def test_config_errors(tollgate_factory, zones, body, message):
    t = tollgate_factory(block(body, zones))
    rc, err = t.test_config()
    assert rc == 1
    assert message in err and "tollgate.conf:" in err
