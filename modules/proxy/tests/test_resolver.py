"""proxy_pass with variables and the asynchronous DNS resolver (resolver, resolver_timeout).

A real authoritative DNS server (tests/integration/dnsserver.py) answers on 127.0.0.1 and counts
the questions it gets; real EchoUpstreams (tests/integration/upstreams.py) show what arrived.
The nginx semantics checked:
* the evaluated host is first matched against `upstream` block names (no DNS query then);
* an IP literal needs no DNS; any other name goes through `resolver`, asynchronously;
* no resolver -> 502 + "no resolver defined to resolve HOST"; NXDOMAIN -> 502 naming the host;
  a resolver that never answers -> 502/504 within resolver_timeout;
* answers are cached (per worker) for the record TTL or `valid=`, then asked again;
* with variables, a URI part in proxy_pass replaces the whole request URI; without one the
  original request URI is passed.
All servers bind 127.0.0.1 only; every wait is bounded.
"""
import json
import socket
import struct
import threading
import time

import pytest

from dnsserver import (
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    DnsServer,
    build_query,
    parse_message,
    query,
)
from harness import Tollgate
from upstreams import EchoUpstream, wait_until

NAME = "svc.tollgate.test"

# ---- client helpers --------------------------------------------------------------------------------


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Resp {self.status} {self.headers} {self.body[:300]!r}>"


def _dechunk(body):
    out = bytearray()
    for _ in range(100_000):
        line, sep, rest = body.partition(b"\r\n")
        if not sep:
            return None
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        body = rest[size + 2 :]
    return None


def fetch(t, target="/", headers=(), timeout=10.0):
    """One GET on its own connection (Connection: close); a Resp, or None when no head came."""
    lines = [f"GET {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    chunks = []
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", t.port), timeout=timeout) as s:
        s.sendall(data)
        for _ in range(100_000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            chunks.append(b)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    hdrs = []
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        hdrs.append((k.decode("latin-1"), v.strip().decode("latin-1")))
    r = Resp(status, hdrs, body)
    if "chunked" in (r.header("transfer-encoding") or "").lower():
        r.body = _dechunk(body)
    elif r.header("content-length") is not None:
        r.body = body[: int(r.header("content-length"))]
    return r


def seen(resp):
    """The EchoUpstream view of a proxied 200 response, with lowercased header lookup `h`."""
    assert resp is not None, "no response"
    assert resp.status == 200, resp
    d = resp.json()
    d["h"] = {}
    for k, v in d["headers"]:
        d["h"].setdefault(k.lower(), []).append(v)
    return d


def assert_status(resp, *statuses):
    assert resp is not None, "no response"
    assert resp.status in statuses, resp


def status_of(resp):
    return resp.status if resp is not None else None


def wait_log(t, needle, timeout=3.0):
    """True once the error log contains `needle` (logs may be written just after the response)."""
    return wait_until(lambda: needle in t.error_log(), timeout)


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def servers():
    """servers(Cls, *args) -> a started EchoUpstream/DnsServer, stopped after the test."""
    made = []

    def make(cls, *args, **kwargs):
        s = cls(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def echo(servers):
    return servers(EchoUpstream)


@pytest.fixture
def gateway(tollgate_factory):
    """gateway(locations, http_extra="", server_extra="", workers=1) -> a started Tollgate; the
    test fails when a worker died during it (a crash would otherwise hide behind a 502)."""
    made = []

    def make(locations, http_extra="", server_extra="", workers=1):
        block = (
            "http {\n    include mime.types;\n%s\n    server {\n        listen 127.0.0.1:{port};\n"
            "        server_name localhost;\n%s\n%s\n    }\n}\n" % (http_extra, server_extra, locations)
        )
        t = tollgate_factory(block, workers=workers).start()
        t.initial_workers = t.wait_workers(workers)
        made.append(t)
        return t

    yield make
    for t in made:
        if t.proc.poll() is None:
            assert t.worker_pids() == t.initial_workers, "a worker died:\n" + t.error_log()[-3000:]


def resolver_line(dns, extra="", timeout=None):
    line = f"resolver 127.0.0.1:{dns.port}{(' ' + extra) if extra else ''};"
    if timeout:
        line += f" resolver_timeout {timeout};"
    return line


# ---- the DNS server itself (so a resolver failure is never a test-server bug) ----------------------


def test_dns_server_a_answer_wire_format(servers):
    dns = servers(DnsServer, {NAME: ["127.0.0.1", "127.0.0.5"]}, ttl=77)
    q = build_query("Svc.TollGate.Test", TYPE_A, qid=0xBEEF)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(q, ("127.0.0.1", dns.port))
        raw, _ = s.recvfrom(65535)
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", raw[:12])
    assert qid == 0xBEEF
    assert flags & 0x8000, "QR"
    assert (flags >> 11) & 0xF == 0, "opcode"
    assert flags & 0x0400, "AA"
    assert flags & 0x0100, "RD copied"
    assert not flags & 0x0200, "TC"
    assert flags & 0xF == RCODE_NOERROR
    assert (qd, an, ns, ar) == (1, 2, 0, 0)
    question = q[12:]
    assert raw[12 : 12 + len(question)] == question, "the question is echoed byte for byte (case kept)"
    off = 12 + len(question)
    for addr in (b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x05"):
        assert raw[off : off + 2] == b"\xc0\x0c", "owner name is a pointer to the question"
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", raw[off + 2 : off + 12])
        assert (rtype, rclass, ttl, rdlen) == (TYPE_A, 1, 77, 4)
        assert raw[off + 12 : off + 16] == addr
        off += 16
    assert off == len(raw)
    m = parse_message(raw)
    assert [a["value"] for a in m["answers"]] == ["127.0.0.1", "127.0.0.5"]
    assert all(a["name"] == "Svc.TollGate.Test" for a in m["answers"])
    assert dns.queries[NAME] == 1 and dns.count(NAME, "A") == 1


def test_dns_server_names_types_nxdomain_set_and_silence(servers):
    dns = servers(DnsServer, {NAME + ".": ["127.0.0.1"], "six.test": ["::1", "127.0.0.9"]}, ttl=30)
    # trailing dot in the records and in the query; case-insensitive
    _, m = query(dns.port, NAME.upper() + ".")
    assert m["rcode"] == RCODE_NOERROR and [a["value"] for a in m["answers"]] == ["127.0.0.1"]
    # AAAA without IPv6 addresses: NOERROR, no answer (NODATA)
    raw, m = query(dns.port, NAME, TYPE_AAAA)
    assert m["rcode"] == RCODE_NOERROR and m["aa"] and m["counts"] == (1, 0, 0, 0)
    assert m["questions"] == [(NAME, TYPE_AAAA, 1)]
    # real AAAA
    _, m = query(dns.port, "six.test", TYPE_AAAA)
    assert [(a["type"], a["value"], a["ttl"]) for a in m["answers"]] == [(TYPE_AAAA, "::1", 30)]
    _, m = query(dns.port, "six.test", TYPE_A)
    assert [a["value"] for a in m["answers"]] == ["127.0.0.9"]
    # unknown name: NXDOMAIN with the question echoed
    _, m = query(dns.port, "nope.test")
    assert m["rcode"] == RCODE_NXDOMAIN and m["counts"] == (1, 0, 0, 0) and m["qr"] and m["aa"]
    # EDNS OPT in the query is tolerated
    _, m = query(dns.port, NAME, edns=True)
    assert m["rcode"] == RCODE_NOERROR and m["answers"][0]["value"] == "127.0.0.1"
    # set() at run time changes the answer and its TTL
    dns.set(NAME, ["127.0.0.3", "127.0.0.4"], ttl=5)
    _, m = query(dns.port, NAME)
    assert [(a["value"], a["ttl"]) for a in m["answers"]] == [("127.0.0.3", 5), ("127.0.0.4", 5)]
    dns.remove(NAME)
    assert query(dns.port, NAME)[1]["rcode"] == RCODE_NXDOMAIN
    assert dns.queries[NAME] == 5 and dns.count(NAME, "AAAA") == 1 and dns.count("six.test") == 2
    # a silent server counts but never answers; a delayed one answers late
    dns.respond = False
    assert query(dns.port, "six.test", timeout=0.5) == (None, None)
    assert dns.count("six.test") == 3
    dns.respond = True
    dns.delay = 0.4
    start = time.monotonic()
    _, m = query(dns.port, "six.test", timeout=3)
    assert m is not None and 0.35 <= time.monotonic() - start < 2.5
    # garbage does not kill it
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x00\x01\x00", ("127.0.0.1", dns.port))
        s.sendto(b"\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f", ("127.0.0.1", dns.port))
    dns.delay = 0
    assert query(dns.port, "six.test")[1]["rcode"] == RCODE_NOERROR


# ---- configuration -------------------------------------------------------------------------------


def _conf(http_extra="", server_extra="", location_extra="", pass_url="http://$arg_h:8080"):
    return (
        "http {\n    include mime.types;\n    %s\n    server {\n        listen 127.0.0.1:{port};\n"
        "        %s\n        location / { %s proxy_pass %s; }\n    }\n}\n"
        % (http_extra, server_extra, location_extra, pass_url)
    )


VALID_CONFIGS = {
    "http": _conf(http_extra="resolver 127.0.0.1:5353 valid=30s ipv6=off; resolver_timeout 5s;"),
    "server": _conf(server_extra="resolver 127.0.0.1:5353 ipv6=on; resolver_timeout 2s;"),
    "location": _conf(location_extra="resolver 127.0.0.1:5353 valid=1m; resolver_timeout 500ms;"),
    "all_levels": _conf(
        http_extra="resolver 127.0.0.1:5353;",
        server_extra="resolver 127.0.0.1:5354; resolver_timeout 3s;",
        location_extra="resolver 127.0.0.1:5355 valid=10s;",
    ),
    "default_port": _conf(http_extra="resolver 127.0.0.1;"),
    "var_with_uri": _conf(http_extra="resolver 127.0.0.1:5353;", pass_url="http://$arg_h:8080/fixed/path"),
    "var_whole_host": _conf(http_extra="resolver 127.0.0.1:5353;", pass_url="http://$http_x_backend"),
    "no_resolver": _conf(),  # a resolver is needed only at run time, for names
}


@pytest.mark.parametrize("name", sorted(VALID_CONFIGS))
def test_config_accepts_resolver_and_variables(name):
    t = Tollgate(VALID_CONFIGS[name])
    try:
        rc, err = t.test_config()
        assert rc == 0, err
    finally:
        t.cleanup()


INVALID_CONFIGS = {
    "resolver_no_args": _conf(http_extra="resolver;"),
    "resolver_bad_valid": _conf(http_extra="resolver 127.0.0.1:5353 valid=soon;"),
    "resolver_bad_ipv6": _conf(http_extra="resolver 127.0.0.1:5353 ipv6=maybe;"),
    "resolver_bad_port": _conf(http_extra="resolver 127.0.0.1:99999;"),
    "resolver_timeout_no_args": _conf(http_extra="resolver 127.0.0.1:5353; resolver_timeout;"),
    "resolver_timeout_bad": _conf(http_extra="resolver 127.0.0.1:5353; resolver_timeout forever;"),
    "resolver_timeout_two_args": _conf(http_extra="resolver 127.0.0.1:5353; resolver_timeout 1s 2s;"),
    "resolver_in_main": "resolver 127.0.0.1:5353;\n" + _conf(),
}


@pytest.mark.parametrize("name", sorted(INVALID_CONFIGS))
def test_config_rejects_bad_resolver_directives(name):
    t = Tollgate(INVALID_CONFIGS[name])
    try:
        rc, err = t.test_config()
        assert rc != 0, err
        assert "resolver" in err, err
    finally:
        t.cleanup()


# ---- routing of the evaluated host ---------------------------------------------------------------------


@pytest.mark.parametrize("with_resolver", [True, False], ids=["resolver", "no_resolver"])
def test_variable_host_naming_an_upstream_block_uses_it_without_dns(gateway, servers, echo, with_resolver):
    other = servers(EchoUpstream)
    # the DNS knows the name too (pointing nowhere useful): it must not be asked
    dns = servers(DnsServer, {"backend": ["127.0.0.1"]})
    http_extra = f"    upstream backend {{ server 127.0.0.1:{echo.port}; }}\n"
    if with_resolver:
        http_extra += "    " + resolver_line(dns)
    t = gateway(
        "        location / { proxy_pass http://$arg_b; }\n"
        "        location /hdr/ { proxy_pass http://$http_x_backend; }",
        http_extra,
    )
    for i in range(3):
        d = seen(fetch(t, f"/p{i}?b=backend"))
        assert d["target"] == f"/p{i}?b=backend"
        assert d["h"]["host"] == ["backend"]  # $proxy_host of a group is its name
    d = seen(fetch(t, "/hdr/x", headers=[("X-Backend", "backend")]))
    assert d["target"] == "/hdr/x"
    assert echo.requests == 4 and other.requests == 0
    assert dns.total_queries() == 0


def test_ip_literal_needs_no_resolver(gateway, servers, echo):
    dns = servers(DnsServer, {})
    t = gateway(
        f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}\n"
        f"        location /res/ {{ {resolver_line(dns)} proxy_pass http://$arg_h:{echo.port}; }}"
    )
    d = seen(fetch(t, "/a?h=127.0.0.1"))  # no resolver at all in this location
    assert d["target"] == "/a?h=127.0.0.1"
    assert d["h"]["host"] == [f"127.0.0.1:{echo.port}"]
    d = seen(fetch(t, "/res/b?h=127.0.0.1"))
    assert d["target"] == "/res/b?h=127.0.0.1"
    assert dns.total_queries() == 0


def test_name_is_resolved_through_resolver(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, ttl=60)
    t = gateway(f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}", "    " + resolver_line(dns))
    d = seen(fetch(t, f"/some/path?h={NAME}&x=%20y"))
    assert d["target"] == f"/some/path?h={NAME}&x=%20y"
    assert d["h"]["host"] == [f"{NAME}:{echo.port}"]  # $proxy_host: host:port as evaluated
    assert dns.count(NAME, "A") >= 1
    assert echo.requests == 1


def test_whole_authority_from_a_header_is_resolved(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, ttl=60)
    t = gateway("        location / { proxy_pass http://$http_x_backend; }", "    " + resolver_line(dns, "ipv6=off"))
    d = seen(fetch(t, "/via/header?q=1", headers=[("X-Backend", f"{NAME}:{echo.port}")]))
    assert d["target"] == "/via/header?q=1"
    assert d["h"]["host"] == [f"{NAME}:{echo.port}"]
    assert dns.count(NAME, "A") == 1


def test_no_resolver_defined_gives_502_and_log(gateway, echo):
    t = gateway(f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}")
    start = time.monotonic()
    r = fetch(t, f"/x?h={NAME}")
    assert_status(r, 502)
    assert time.monotonic() - start < 3
    assert wait_log(t, f"no resolver defined to resolve {NAME}"), t.error_log()[-2000:]
    assert echo.requests == 0
    # the worker still serves
    assert seen(fetch(t, "/y?h=127.0.0.1"))["target"] == "/y?h=127.0.0.1"


def test_nxdomain_gives_502_and_log_names_host(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]})
    t = gateway(f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}", "    " + resolver_line(dns))
    start = time.monotonic()
    r = fetch(t, "/x?h=missing.tollgate.test")
    assert_status(r, 502)
    assert time.monotonic() - start < 3
    assert dns.count("missing.tollgate.test") >= 1
    assert wait_log(t, "missing.tollgate.test"), t.error_log()[-2000:]
    assert echo.requests == 0
    assert seen(fetch(t, f"/ok?h={NAME}"))["target"] == f"/ok?h={NAME}"


def test_resolver_that_never_answers_fails_within_resolver_timeout(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, respond=False)
    t = gateway(
        f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}\n"
        '        location = /static { return 200 "static"; }',
        "    " + resolver_line(dns, timeout="1s"),
    )
    start = time.monotonic()
    r = fetch(t, f"/x?h={NAME}", timeout=15)
    took = time.monotonic() - start
    assert_status(r, 502, 504)
    assert 0.8 <= took < 3.5, took
    assert dns.count(NAME) >= 1
    assert wait_log(t, NAME), t.error_log()[-2000:]
    assert echo.requests == 0
    r = fetch(t, "/static")
    assert r is not None and r.status == 200 and r.body == b"static"


def test_worker_is_not_blocked_while_a_name_resolves(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, delay=1.5)
    t = gateway(
        f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}\n"
        '        location = /static { return 200 "static"; }',
        "    " + resolver_line(dns, "ipv6=off", timeout="10s"),
        workers=1,
    )
    result = {}

    def slow():
        s = time.monotonic()
        result["resp"] = fetch(t, f"/slow?h={NAME}", timeout=10)
        result["took"] = time.monotonic() - s

    th = threading.Thread(target=slow, daemon=True)
    th.start()
    assert wait_until(lambda: dns.count(NAME) >= 1, 3), "no DNS query arrived"
    # the only worker must keep serving other requests while the answer is pending
    s = time.monotonic()
    r = fetch(t, "/static", timeout=5)
    assert r is not None and r.status == 200 and r.body == b"static"
    assert time.monotonic() - s < 0.6
    s = time.monotonic()
    assert seen(fetch(t, "/lit?h=127.0.0.1", timeout=5))["target"] == "/lit?h=127.0.0.1"
    assert time.monotonic() - s < 0.6
    assert "resp" not in result, "the resolving request finished before the DNS answered"
    th.join(timeout=12)
    assert not th.is_alive()
    assert seen(result["resp"])["target"] == f"/slow?h={NAME}"
    assert 1.2 <= result["took"] < 5, result["took"]


def test_concurrent_requests_for_one_name_share_one_query(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, ttl=60, delay=0.8)
    t = gateway(
        f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}",
        "    " + resolver_line(dns, "ipv6=off", timeout="10s"),
        workers=1,
    )
    results = [None] * 5

    def one(i):
        results[i] = fetch(t, f"/c{i}?h={NAME}", timeout=10)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=12)
    assert all(not th.is_alive() for th in threads)
    assert sorted(seen(r)["target"] for r in results) == sorted(f"/c{i}?h={NAME}" for i in range(5))
    assert dns.count(NAME, "A") == 1, list(dns.log)


# ---- caching -------------------------------------------------------------------------------------------


def _five(t):
    for i in range(5):
        d = seen(fetch(t, f"/r{i}?h={NAME}"))
        assert d["target"] == f"/r{i}?h={NAME}"


def test_answer_cached_for_record_ttl_then_asked_again(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, ttl=3)
    t = gateway(f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}", "    " + resolver_line(dns, "ipv6=off"))
    start = time.monotonic()
    _five(t)
    assert time.monotonic() - start < 2, "the requests took longer than the TTL; counting is meaningless"
    assert dns.count(NAME, "A") == 1, list(dns.log)
    assert dns.count(NAME, "AAAA") == 0, "ipv6=off must not ask AAAA"
    assert echo.requests == 5
    # the name changes; the cached answer stays in use until the TTL (3 s) has passed
    dns.remove(NAME)
    assert seen(fetch(t, f"/still?h={NAME}"))["target"] == f"/still?h={NAME}"
    assert dns.count(NAME, "A") == 1
    time.sleep(max(0.0, start + 4.2 - time.monotonic()))
    r = fetch(t, f"/after?h={NAME}")
    assert dns.count(NAME, "A") == 2, list(dns.log)
    assert_status(r, 502)  # the new answer (NXDOMAIN) is used
    assert echo.requests == 6
    assert wait_log(t, NAME), t.error_log()[-2000:]


def test_valid_overrides_the_record_ttl(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, ttl=3600)
    t = gateway(
        f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}",
        "    " + resolver_line(dns, "valid=2s ipv6=off"),
    )
    start = time.monotonic()
    _five(t)
    assert dns.count(NAME, "A") == 1, list(dns.log)
    dns.remove(NAME)
    time.sleep(max(0.0, start + 3.2 - time.monotonic()))
    r = fetch(t, f"/after?h={NAME}")
    assert dns.count(NAME, "A") == 2, list(dns.log)
    assert_status(r, 502)
    assert echo.requests == 5


def test_changed_answer_is_used_after_valid_expires(gateway, servers, echo):
    """The answer changes [127.0.0.1] -> [] (NOERROR, no address: 502) -> [127.0.0.1] (200 again).

    (Every server binds 127.0.0.1 only, so a second upstream cannot be told apart by address;
    the change is made visible through the failing answer instead.)"""
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, ttl=3600)
    t = gateway(
        f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}",
        "    " + resolver_line(dns, "valid=1s ipv6=off"),
    )
    assert seen(fetch(t, f"/1?h={NAME}"))["target"] == f"/1?h={NAME}"
    dns.set(NAME, [])
    ok = wait_until(lambda: status_of(fetch(t, f"/2?h={NAME}", timeout=3)) == 502, 5, interval=0.3)
    assert ok, "the empty answer was never used"
    n = dns.count(NAME, "A")
    assert 2 <= n <= 6, list(dns.log)
    dns.set(NAME, ["127.0.0.1"])
    before = echo.requests
    ok = wait_until(lambda: status_of(fetch(t, f"/3?h={NAME}", timeout=3)) == 200, 5, interval=0.3)
    assert ok, "the restored answer was never used"
    assert echo.requests == before + 1
    assert dns.count(NAME, "A") <= 20


def test_ipv6_on_asks_aaaa_too_and_uses_the_a_answer(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, ttl=60)
    t = gateway(f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}", "    " + resolver_line(dns, "ipv6=on"))
    for i in range(3):
        assert seen(fetch(t, f"/v{i}?h={NAME}"))["target"] == f"/v{i}?h={NAME}"
    assert dns.count(NAME, "A") == 1
    assert dns.count(NAME, "AAAA") == 1


# ---- URI rules with variables --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", NAME])
def test_uri_part_with_variables_replaces_the_whole_uri(gateway, servers, echo, host):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]})
    t = gateway(
        f"        location /api/ {{ proxy_pass http://$arg_h:{echo.port}/fixed; }}\n"
        f"        location /v/ {{ proxy_pass http://$arg_h:{echo.port}/pre/$arg_p; }}\n"
        '        location / { return 404 "not proxied"; }',
        "    " + resolver_line(dns, "ipv6=off"),
    )
    assert seen(fetch(t, f"/api/x/y?h={host}&q=1"))["target"] == "/fixed"
    assert seen(fetch(t, f"/api/?h={host}"))["target"] == "/fixed"
    assert seen(fetch(t, f"/v/anything?h={host}&p=deep"))["target"] == "/pre/deep"


@pytest.mark.parametrize("host", ["127.0.0.1", NAME])
def test_without_uri_part_the_original_request_uri_is_passed(gateway, servers, echo, host):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]})
    t = gateway(
        f"        location /api/ {{ proxy_pass http://$arg_h:{echo.port}; }}\n"
        '        location / { return 404 "not proxied"; }',
        "    " + resolver_line(dns, "ipv6=off"),
    )
    for target in (
        f"/api/x?h={host}",
        f"/api/a%2Fb/caf%C3%A9?h={host}&y=%20",
        f"/api//double//slash?h={host}",
        f"/api/x/../y?h={host}",
    ):
        assert seen(fetch(t, target))["target"] == target


# ---- inheritance ----------------------------------------------------------------------------------------


def test_location_resolver_overrides_http_resolver(gateway, servers, echo):
    dead = servers(DnsServer, {NAME: ["127.0.0.1"]}, respond=False)
    live = servers(DnsServer, {NAME: ["127.0.0.1"]})
    t = gateway(
        f"        location /own/ {{ {resolver_line(live, 'ipv6=off')} proxy_pass http://$arg_h:{echo.port}; }}\n"
        f"        location /inherit/ {{ proxy_pass http://$arg_h:{echo.port}; }}",
        "    " + resolver_line(dead, "ipv6=off", timeout="1s"),
    )
    assert seen(fetch(t, f"/own/x?h={NAME}"))["target"] == f"/own/x?h={NAME}"
    assert live.count(NAME) == 1 and dead.count(NAME) == 0
    r = fetch(t, f"/inherit/x?h={NAME}", timeout=10)
    assert_status(r, 502, 504)
    assert dead.count(NAME) >= 1 and live.count(NAME) == 1


# ---- robustness ---------------------------------------------------------------------------------------


def test_upstream_block_name_matches_case_insensitively(gateway, servers, echo):
    """nginx compares the evaluated host with upstream names ignoring case (ngx_strncasecmp)."""
    dns = servers(DnsServer, {})
    t = gateway(
        "        location / { proxy_pass http://$arg_b; }",
        f"    upstream backend {{ server 127.0.0.1:{echo.port}; }}\n    " + resolver_line(dns, timeout="1s"),
    )
    assert seen(fetch(t, "/x?b=BackEnd"))["target"] == "/x?b=BackEnd"
    assert dns.total_queries() == 0


@pytest.mark.parametrize("ipv6", ["off", "on"])
def test_client_abort_while_resolving_leaves_the_worker_healthy(gateway, servers, echo, ipv6):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, delay=0.6)
    t = gateway(
        f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}",
        "    " + resolver_line(dns, f"ipv6={ipv6}", timeout="5s"),
    )
    for i in range(3):
        with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
            s.sendall(f"GET /gone{i}?h={NAME} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            # The first request starts the query; later ones join it while it is under way.
            assert wait_until(lambda: dns.count(NAME) >= 1, 3)
        # the client is gone before the answer arrives
    time.sleep(1.0)  # the late answers arrive now
    assert echo.requests == 0, "a request of a closed client was sent upstream"
    assert seen(fetch(t, f"/after?h={NAME}"))["target"] == f"/after?h={NAME}"
    assert t.proc.poll() is None and t.worker_pids() == t.initial_workers, t.error_log()[-2000:]


def test_resolver_recovers_after_timeouts(gateway, servers, echo):
    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, respond=False)
    t = gateway(
        f"        location / {{ proxy_pass http://$arg_h:{echo.port}; }}",
        "    " + resolver_line(dns, "ipv6=off", timeout="400ms"),
    )
    for i in range(4):
        assert_status(fetch(t, f"/dead{i}?h={NAME}", timeout=5), 502, 504)
    dns.respond = True
    start = time.monotonic()
    r = fetch(t, f"/alive?h={NAME}", timeout=5)
    assert seen(r)["target"] == f"/alive?h={NAME}", (r, list(dns.log))
    assert time.monotonic() - start < 1.5


def test_graceful_shutdown_completes_pending_lookups(tollgate_factory, servers, echo):
    import signal

    dns = servers(DnsServer, {NAME: ["127.0.0.1"]}, delay=1.5)
    t = tollgate_factory(
        "http {\n    server {\n        listen 127.0.0.1:{port};\n"
        f"        location / {{ {resolver_line(dns, 'ipv6=off', timeout='5s')} proxy_pass http://$arg_h:{echo.port}; }}\n"
        "    }\n}\n"
    ).start()
    t.wait_workers(1)
    socks = []
    try:
        for i in range(3):
            s = socket.create_connection(("127.0.0.1", t.port), timeout=8)
            s.sendall(f"GET /q{i}?h={NAME} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            socks.append(s)
        assert wait_until(lambda: dns.count(NAME) >= 1, 3)
        t.signal(signal.SIGQUIT)
        for s in socks:
            head = s.recv(64)
            assert head.startswith(b"HTTP/1.1 200 "), head
        assert t.wait_exit(10) == 0
    finally:
        for s in socks:
            s.close()
    assert echo.requests == 3
    assert "exited on signal" not in t.error_log(), t.error_log()[-2000:]
