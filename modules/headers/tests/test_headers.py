"""add_header (nginx's ngx_http_headers_module) against the real binary: headers added only to
200/201/204/206/301/302/303/304/307/308 unless `always`, values with variables, nginx's
inheritance (a level with its own add_header drops its parent's), several headers, responses
of every origin (return, errors, redirects, 304 from static, proxied, 101 upgrades) getting the
filter exactly once, HSTS on an HTTPS server, and config errors with file:line."""
import os
import re
import socket
import subprocess
import sys
import tempfile

import pytest

from harness import BINARY, free_port, raw_request
from upstreams import EchoUpstream, RawUpstream

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "ssl", "tests"))
from certs import Pki  # noqa: E402


def modules():
    out = subprocess.run([BINARY, "-V"], capture_output=True, text=True, timeout=10)
    return (out.stdout + out.stderr).split("modules:")[-1]


pytestmark = pytest.mark.skipif(not re.search(r"\bheaders\b", modules()),
                                reason="the headers module is not compiled in")


def block(server_body, http_extra=""):
    return (
        "http {\n include mime.types;\n%s\n server {\n listen 127.0.0.1:{port};\n"
        " server_name localhost;\n%s\n }\n}\n" % (http_extra, server_body)
    )


def get(port, path="/", extra=""):
    data = raw_request(port, ("GET %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n"
                              % (path, extra)).encode())
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
    return status, headers, body


def values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


@pytest.mark.parametrize("code,added", [
    (200, True), (201, True), (204, True), (206, True), (301, True), (302, True), (303, True),
    (307, True), (308, True), (202, False), (400, False), (403, False), (404, False),
    (429, False), (500, False), (503, False),
])
def test_status_dependent(tollgate_factory, code, added):
    ret = "return %d https://example.test/x;" % code if code in (301, 302, 303, 307, 308) \
        else "return %d;" % code
    t = tollgate_factory(block(" location / { add_header X-A a; add_header X-B b always; %s }"
                               % ret)).start()
    status, h, _ = get(t.port)
    assert status == code
    assert values(h, "X-A") == (["a"] if added else [])
    assert values(h, "X-B") == ["b"]  # always: on every status, once


def test_variables_and_empty_value(tollgate_factory):
    t = tollgate_factory(block(
        ' location / { add_header X-Uri "$uri?$args" always; add_header X-Empty "$arg_none";'
        ' add_header X-Host $host; return 200 ok; }')).start()
    status, h, _ = get(t.port, "/p/q?a=1")
    assert status == 200
    assert values(h, "X-Uri") == ["/p/q?a=1"]
    assert values(h, "X-Host") == ["localhost"]
    assert values(h, "X-Empty") == []  # an empty value adds nothing, as nginx


def test_inheritance(tollgate_factory):
    t = tollgate_factory(block(
        " add_header X-Server s;\n"
        " location /inherit { return 200; }\n"
        " location /own { add_header X-Own o; return 200; }\n"
        "",
        http_extra=" add_header X-Http h;")).start()
    _, h, _ = get(t.port, "/inherit")
    assert values(h, "X-Server") == ["s"] and values(h, "X-Http") == []
    _, h, _ = get(t.port, "/own")
    assert values(h, "X-Own") == ["o"] and values(h, "X-Server") == []
    _, h, _ = get(t.port, "/nomatch")  # the server defaults answer 404; no `always`
    assert values(h, "X-Server") == []
    t2 = tollgate_factory(block(" location / { return 200; }", http_extra=" add_header X-Http h;"))
    t2.start()
    _, h, _ = get(t2.port)
    assert values(h, "X-Http") == ["h"]


def test_multiple_and_repeated_names(tollgate_factory):
    t = tollgate_factory(block(
        ' location / { add_header Link "</a>; rel=preload"; add_header Link "</b>; rel=preload";'
        " add_header Cache-Control no-store; return 200; }")).start()
    _, h, _ = get(t.port)
    assert values(h, "Link") == ["</a>; rel=preload", "</b>; rel=preload"]
    assert values(h, "Cache-Control") == ["no-store"]


def test_error_json_and_error_page(tollgate_factory):
    t = tollgate_factory(block(
        " location / { add_header X-E e always; add_header X-N n; return 403; }\n"
        " location /ep { error_page 404 =200 /ok; add_header X-EP ep; return 404; }\n"
        " location = /ok { add_header X-OK ok; return 200 fine; }\n")).start()
    status, h, body = get(t.port)
    assert status == 403 and b'"status":403' in body.replace(b" ", b"")
    assert values(h, "X-E") == ["e"] and values(h, "X-N") == []
    # error_page to another location: that location's list applies to the final 200, once.
    status, h, body = get(t.port, "/ep")
    assert status == 200 and body == b"fine"
    assert values(h, "X-OK") == ["ok"] and values(h, "X-EP") == []


def test_static_304_and_206(tollgate_factory):
    root = tempfile.mkdtemp(prefix="tollgate-hdr-")
    os.chmod(root, 0o755)
    with open(os.path.join(root, "f.txt"), "w") as f:
        f.write("0123456789")
    os.chmod(os.path.join(root, "f.txt"), 0o644)
    t = tollgate_factory(block(" location / { root %s; add_header X-S s; }" % root)).start()
    status, h, body = get(t.port, "/f.txt")
    assert status == 200 and body == b"0123456789" and values(h, "X-S") == ["s"]
    lm = values(h, "Last-Modified")[0]
    status, h, _ = get(t.port, "/f.txt", "If-Modified-Since: %s\r\n" % lm)
    assert status == 304 and values(h, "X-S") == ["s"]
    status, h, body = get(t.port, "/f.txt", "Range: bytes=2-4\r\n")
    assert status == 206 and body == b"234" and values(h, "X-S") == ["s"]
    status, h, _ = get(t.port, "/missing.txt")
    assert status == 404 and values(h, "X-S") == []


def test_proxied_responses(tollgate_factory):
    echo = EchoUpstream()
    raw = RawUpstream(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nX-Up: u\r\n\r\n")
    try:
        t = tollgate_factory(block(
            " location / { proxy_pass http://127.0.0.1:%d; add_header X-P p; add_header X-A a always; }\n"
            " location /raw { proxy_pass http://127.0.0.1:%d; add_header X-P p; add_header X-A a always; }\n"
            % (echo.port, raw.port))).start()
        status, h, _ = get(t.port, "/x")
        assert status == 200 and values(h, "X-P") == ["p"] and values(h, "X-A") == ["a"]
        status, h, _ = get(t.port, "/raw")
        assert status == 503 and values(h, "X-Up") == ["u"]
        assert values(h, "X-P") == [] and values(h, "X-A") == ["a"]
    finally:
        echo.stop()
        raw.stop()


def test_upgrade_101_not_without_always(tollgate_factory):
    raw = RawUpstream(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\n\r\n", linger=0.5)
    try:
        t = tollgate_factory(block(
            " location / { proxy_pass http://127.0.0.1:%d; add_header X-P p; add_header X-A a always; }"
            % raw.port)).start()
        with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        head = data.split(b"\r\n\r\n")[0].decode("latin-1")
        assert head.startswith("HTTP/1.1 101"), head
        # As nginx: 101 is not in the list, so only `always` headers go on it, once.
        assert "X-P:" not in head and head.count("X-A: a") == 1, head
    finally:
        raw.stop()


def test_hsts_on_https(tollgate_factory):
    root = tempfile.mkdtemp(prefix="tollgate-hdr-pki-")
    os.chmod(root, 0o755)
    ca = Pki(os.path.join(root, "ca"), "Headers CA")
    os.chmod(ca.dir, 0o755)
    crt, key = ca.issue("a", "a.test", sans=["a.test"])
    plain = free_port()
    t = tollgate_factory(
        "http {\n server {\n listen 127.0.0.1:{port} ssl;\n server_name a.test;\n"
        " ssl_certificate %s;\n ssl_certificate_key %s;\n"
        ' add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;\n'
        " location / { return 200 secure; }\n }\n"
        " server {\n listen 127.0.0.1:%d;\n location / { return 301 https://a.test$request_uri; }\n }\n"
        "}\n" % (crt, key, plain))
    t.start()
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", "--cacert", ca.ca_cert,
                        "--resolve", "a.test:%d:127.0.0.1" % t.port,
                        "https://a.test:%d/" % t.port], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert re.search(r"(?im)^strict-transport-security: max-age=31536000; includeSubDomains\r?$",
                     r.stdout), r.stdout
    assert r.stdout.count("trict-Transport-Security") == 1
    status, h, _ = get(plain, "/a?b")
    assert status == 301 and values(h, "Location") == ["https://a.test/a?b"]
    assert values(h, "Strict-Transport-Security") == []  # not on the plain-HTTP server


@pytest.mark.parametrize("line,err", [
    ("add_header X;", 'invalid number of arguments in "add_header" directive'),
    ("add_header X y z;", 'invalid value "z" in "add_header" directive'),
    ('add_header "X Y" y;', 'invalid value "X Y" in "add_header" directive'),
    ("add_header X $nosuchvar;", "unknown"),
    ("add_header X y always extra;", 'invalid number of arguments in "add_header" directive'),
])
def test_config_errors(tollgate_factory, line, err):
    t = tollgate_factory(block(" location / {\n %s\n return 200; }" % line))
    rc, out = t.test_config()
    assert rc == 1, out
    assert err in out, out
    assert re.search(r"tollgate\.conf:14:", out), out  # the add_header line


def test_limiter_429_gets_only_always_headers(tollgate_factory):
    if not re.search(r"\blimit_req\b", modules()):
        pytest.skip("limit_req is not compiled in")
    root = tempfile.mkdtemp(prefix="tollgate-hdr-")  # content from static: return would
    os.chmod(root, 0o755)                             # answer in Rewrite, before the limit
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write("hi")
    os.chmod(os.path.join(root, "index.html"), 0o644)
    t = tollgate_factory(block(
        " location / { limit_req zone=one; add_header X-N n; add_header X-A a always; root %s; }"
        % root,
        http_extra=" limit_req_zone $remote_addr zone=one:1m rate=1r/m;")).start()
    status, h, _ = get(t.port)
    assert status == 200 and values(h, "X-N") == ["n"] and values(h, "X-A") == ["a"]
    status, h, body = get(t.port)
    assert status == 429, body
    assert values(h, "X-N") == [] and values(h, "X-A") == ["a"]
