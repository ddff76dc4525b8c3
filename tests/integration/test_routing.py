"""Request routing of the real tollgate binary: nginx's location matching order, server_name
selection, IPv6 listens and error_page (internal redirects, named locations, URL redirects)."""
import json
import socket
import subprocess
import time

import pytest

from harness import Tollgate, free_port


def fetch(port, path="/", host="localhost", host_ip="127.0.0.1", method="GET", timeout=3.0,
          version="HTTP/1.1", extra=""):
    """One request with Connection: close. Returns (status, headers, body, seconds taken)."""
    req = f"{method} {path} {version}\r\n"
    if host is not None:
        req += f"Host: {host}\r\n"
    req += extra + "Connection: close\r\n\r\n"
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    start = time.monotonic()
    with socket.socket(family) as s:
        s.settimeout(timeout)
        s.connect((host_ip, port))
        s.sendall(req.encode())
        data = b""
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                raise AssertionError(f"no close within {timeout}s; got {data[:300]!r}")
            if not b:
                break
            data += b
    elapsed = time.monotonic() - start
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response: {data[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers and method != "HEAD":
        assert len(body) == int(headers["content-length"]), data
    return status, headers, body, elapsed


def body_of(port, path="/", **kw):
    status, _, body, _ = fetch(port, path, **kw)
    return status, body.decode("latin-1")


@pytest.fixture(scope="module")
def module_instances():
    made = []

    def make(http_block, **kw):
        t = Tollgate(http_block, **kw)
        made.append(t)
        t.start()
        return t

    yield make
    for t in made:
        t.cleanup()


# ---- location matching ------------------------------------------------------------------------

LOCATIONS = r"""
http {
    include mime.types;
    server {
        listen 127.0.0.1:{port};
        server_name localhost;
        location = / { return 200 "exact-root"; }
        location / { return 200 "prefix-root"; }
        location /docs/ { return 200 "prefix-docs"; }
        location /docs/api/ { return 200 "prefix-docs-api"; }
        location = /docs/api/exact.php { return 200 "exact-docs-api"; }
        location ^~ /static/ { return 200 "noregex-static"; }
        location /static/deep/ { return 200 "prefix-static-deep"; }
        location ^~ /st { return 200 "noregex-st"; }
        location ~ \.php$ { return 200 "regex-php"; }
        location ~ ^/docs/.*\.json$ { return 200 "regex-docs-json"; }
        location ~ \.json$ { return 200 "regex-json"; }
        location ~* \.jpg$ { return 200 "regex-jpg-ci"; }
        location ~ /CaSe/ { return 200 "regex-case"; }
        location @named { return 200 "named"; }
        location /images { return 200 "prefix-images"; }
        location =/exact-nospace { return 200 "exact-nospace"; }
    }
    server {
        listen 127.0.0.1:{port};
        server_name nolocation.test;
        location /only/ { return 200 "only"; }
    }
    server {
        listen 127.0.0.1:{port};
        server_name defaults-error-page.test;
        error_page 404 /custom;
        location = /custom { return 200 "custom from server level"; }
    }
}
"""


@pytest.fixture(scope="module")
def loc(module_instances):
    return module_instances(LOCATIONS)


@pytest.mark.parametrize("path,expected", [
    # = beats everything, including regexes that would also match
    ("/", "exact-root"),
    ("/docs/api/exact.php", "exact-docs-api"),
    ("/exact-nospace", "exact-nospace"),
    # = is exact: anything longer falls through
    ("/docs/api/exact.phpx", "prefix-docs-api"),
    ("/exact-nospace/", "prefix-root"),
    # longest prefix, regardless of config order
    ("/x", "prefix-root"),
    ("/docs/", "prefix-docs"),
    ("/docs/intro", "prefix-docs"),
    ("/docs/api/v1", "prefix-docs-api"),
    ("/docs", "prefix-root"),
    ("/imagesfoo", "prefix-images"),
    # ^~ as the longest prefix stops the regex search
    ("/static/x.php", "noregex-static"),
    ("/static/a.json", "noregex-static"),
    ("/stx.php", "noregex-st"),
    # ... but only when it is the longest matching prefix
    ("/static/deep/x.php", "regex-php"),
    ("/static/deep/x", "prefix-static-deep"),
    # regexes beat prefixes, and the first matching regex in config order wins
    ("/docs/x.php", "regex-php"),
    ("/docs/api/x.php", "regex-php"),
    ("/docs/a.json", "regex-docs-json"),
    ("/other/a.json", "regex-json"),
    # ~ is case-sensitive, ~* is not
    ("/x.PHP", "prefix-root"),
    ("/a.jpg", "regex-jpg-ci"),
    ("/A.JPG", "regex-jpg-ci"),
    ("/docs/a.JpG", "regex-jpg-ci"),
    ("/CaSe/x", "regex-case"),
    ("/case/x", "prefix-root"),
    # prefixes are case-sensitive too
    ("/DOCS/intro", "prefix-root"),
    # matching uses the normalized, decoded URI
    ("/docs/%2e%2e/x.php", "regex-php"),
    ("//docs///api//v1", "prefix-docs-api"),
    ("/%64ocs/api/exact.php", "exact-docs-api"),
    ("/docs/api/exact.php?x=1", "exact-docs-api"),
    # named locations are not reachable from outside
    ("/@named", "prefix-root"),
])
def test_location_matching_order(loc, path, expected):
    status, body = body_of(loc.port, path)
    assert (status, body) == (200, expected)


def test_named_location_not_reachable_by_request_target(loc):
    status, _, body, _ = fetch(loc.port, "@named")
    assert status == 400 and b"named" not in body


def test_no_matching_location_uses_server_defaults(loc):
    status, headers, body, _ = fetch(loc.port, "/elsewhere", host="nolocation.test")
    assert status == 404
    assert json.loads(body)["status"] == 404
    status, body = body_of(loc.port, "/only/x", host="nolocation.test")
    assert (status, body) == (200, "only")


def test_server_level_error_page_applies_to_server_defaults(loc):
    status, headers, body, _ = fetch(loc.port, "/nothing-here", host="defaults-error-page.test")
    assert (status, body) == (404, b"custom from server level")


# ---- server_name selection --------------------------------------------------------------------

NAMES = r"""
http {
    include mime.types;
    server {
        listen 127.0.0.1:{port};
        server_name first.test;
        return 200 "first";
    }
    server {
        listen 127.0.0.1:{port};
        server_name example.com www.example.com;
        return 200 "exact";
    }
    server {
        listen 127.0.0.1:{port};
        server_name *.example.com;
        return 200 "leading-wildcard";
    }
    server {
        listen 127.0.0.1:{port};
        server_name *.deep.example.com;
        return 200 "longer-leading-wildcard";
    }
    server {
        listen 127.0.0.1:{port};
        server_name www.*;
        return 200 "trailing-wildcard";
    }
    server {
        listen 127.0.0.1:{port};
        server_name ~^api\d+\.example\.com$ ~^api\d+\.example\.org$;
        return 200 "regex";
    }
    server {
        listen 127.0.0.1:{port};
        server_name ~^(www|api)\d*\.example\.org$;
        return 200 "second-regex";
    }
    server {
        listen 127.0.0.1:{port} default_server;
        server_name default.test;
        return 200 "default";
    }
}
"""


@pytest.fixture(scope="module")
def names(module_instances):
    return module_instances(NAMES)


@pytest.mark.parametrize("host,expected", [
    ("example.com", "exact"),
    ("www.example.com", "exact"),          # exact beats *.example.com and www.*
    ("first.test", "first"),
    ("default.test", "default"),
    ("foo.example.com", "leading-wildcard"),
    ("a.b.example.com", "leading-wildcard"),
    ("x.deep.example.com", "longer-leading-wildcard"),  # the longest wildcard wins
    ("api1.example.com", "leading-wildcard"),  # wildcards beat regexes (nginx order)
    ("www.example.org", "trailing-wildcard"),  # trailing wildcard beats the regexes
    ("www.anything", "trailing-wildcard"),
    ("api12.example.org", "regex"),  # first matching regex in config order
    ("api.example.org", "second-regex"),
    ("unknown.test", "default"),  # default_server, not the first server
    ("example.com.evil", "default"),
    ("xexample.com", "default"),
    ("EXAMPLE.COM", "exact"),
    ("Www.Example.Com", "exact"),
    ("example.com:8080", "exact"),
    ("example.com.", "exact"),
    ("EXAMPLE.com.:8080", "exact"),
    ("Foo.Example.Com:1", "leading-wildcard"),
    ("127.0.0.1", "default"),
    ("[::1]", "default"),
    ("[::1]:80", "default"),
])
def test_server_name_selection(names, host, expected):
    status, body = body_of(names.port, "/", host=host)
    assert (status, body) == (200, expected)


def test_http10_without_host_goes_to_default_server(names):
    status, body = body_of(names.port, "/", host=None, version="HTTP/1.0")
    assert (status, body) == (200, "default")


def test_leading_wildcard_does_not_match_bare_domain(module_instances):
    t = module_instances(r"""
http {
    server { listen 127.0.0.1:{port}; server_name fallback.test; return 200 "fallback"; }
    server { listen 127.0.0.1:{port}; server_name *.example.com; return 200 "wildcard"; }
}
""")
    assert body_of(t.port, "/", host="example.com") == (200, "fallback")
    assert body_of(t.port, "/", host="a.example.com") == (200, "wildcard")


def test_regex_server_name(module_instances):
    t = module_instances(r"""
http {
    server { listen 127.0.0.1:{port}; server_name fallback.test; return 200 "fallback"; }
    server { listen 127.0.0.1:{port}; server_name ~^api\d+\.example\.com$; return 200 "regex"; }
}
""")
    assert body_of(t.port, "/", host="api7.example.com") == (200, "regex")
    assert body_of(t.port, "/", host="API42.EXAMPLE.COM:8443") == (200, "regex")
    assert body_of(t.port, "/", host="api.example.com") == (200, "fallback")
    assert body_of(t.port, "/", host="xapi7.example.com") == (200, "fallback")
    assert body_of(t.port, "/", host="api7.example.com.evil") == (200, "fallback")


def test_first_server_is_default_without_default_server(module_instances):
    t = module_instances("""
http {
    server { listen 127.0.0.1:{port}; server_name one.test; return 200 "one"; }
    server { listen 127.0.0.1:{port}; server_name two.test; return 200 "two"; }
}
""")
    assert body_of(t.port, "/", host="two.test") == (200, "two")
    assert body_of(t.port, "/", host="one.test") == (200, "one")
    assert body_of(t.port, "/", host="three.test") == (200, "one")


def test_server_name_matches_per_listen_address(module_instances):
    other = free_port()
    t = module_instances("""
http {
    server { listen 127.0.0.1:{port}; server_name a.test; return 200 "a-main"; }
    server { listen 127.0.0.1:%d; server_name a.test; return 200 "a-other"; }
    server { listen 127.0.0.1:{port}; listen 127.0.0.1:%d; server_name b.test; return 200 "b-both"; }
}
""" % (other, other))
    assert body_of(t.port, "/", host="a.test") == (200, "a-main")
    assert body_of(other, "/", host="a.test") == (200, "a-other")
    assert body_of(t.port, "/", host="b.test") == (200, "b-both")
    assert body_of(other, "/", host="b.test") == (200, "b-both")
    assert body_of(other, "/", host="zzz.test") == (200, "a-other")


def _ipv6_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_available(), reason="no ::1 on this host")
def test_ipv6_listen(module_instances):
    t = module_instances("""
http {
    server {
        listen 127.0.0.1:{port};
        listen [::1]:{port};
        location / { return 200 "addr=$server_addr remote=$remote_addr host=$host"; }
    }
}
""")
    status, body = body_of(t.port, "/", host="[::1]:%d" % t.port, host_ip="::1")
    assert status == 200
    assert body == "addr=::1 remote=::1 host=[::1]"
    status, body = body_of(t.port, "/", host="localhost", host_ip="127.0.0.1")
    assert (status, body) == (200, "addr=127.0.0.1 remote=127.0.0.1 host=localhost")
    out = subprocess.run(["curl", "-sS", "-g", "--max-time", "5", f"http://[::1]:{t.port}/x"],
                         capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"addr=::1 remote=::1 host=[::1]".encode()


@pytest.mark.skipif(not _ipv6_available(), reason="no ::1 on this host")
def test_ipv6_only_listen_with_names(module_instances):
    port6 = free_port()
    t = module_instances("""
http {
    server { listen 127.0.0.1:{port}; return 200 "v4"; }
    server { listen [::1]:%d; server_name v6a.test; return 200 "v6a"; }
    server { listen [::1]:%d default_server; server_name v6b.test; return 200 "v6b"; }
}
""" % (port6, port6))
    assert body_of(port6, "/", host="v6a.test", host_ip="::1") == (200, "v6a")
    assert body_of(port6, "/", host="unknown", host_ip="::1") == (200, "v6b")
    assert body_of(t.port, "/", host="v6a.test") == (200, "v4")


# ---- error_page -------------------------------------------------------------------------------

ERROR_PAGES = r"""
http {
    include mime.types;
    server {
        listen 127.0.0.1:{port};
        error_page 404 /custom;
        location = /custom { return 200 "custom"; }
        location = /missing { return 404; }
        location = /eq200 { error_page 404 =200 /custom; return 404; }
        location = /eq201 { error_page 404 =201 /custom; return 404; }
        location = /with-args { error_page 404 /echo?from=error; return 404; }
        location = /echo { return 200 "echo uri=$uri args=$args method=$request_method"; }
        location = /fallback { error_page 500 = @fallback; return 500; }
        location = /fallback-keep { error_page 500 @fallback; return 500; }
        location @fallback { return 201 "fallback $uri"; }
        location = /absolute { error_page 404 http://example.com/not-found; return 404; }
        location = /absolute301 { error_page 404 =301 http://example.com/moved; return 404; }
        location = /self { error_page 404 /self; return 404; }
        location = /ping { error_page 404 /pong; return 404; }
        location = /pong { error_page 404 /ping; return 404; }
        location = /chain { error_page 404 /chain-target; return 404; }
        location = /chain-target { error_page 500 /custom; return 500; }
        location = /missing-named { error_page 404 @nowhere; return 404; }
        location = /multi { error_page 403 404 /custom; return 403; }
        location /inherit/ { return 404; }
        location /own/ { error_page 404 /echo; return 404; }
        location = /noerror { error_page 404 /custom; return 200 "fine"; }
    }
}
"""


@pytest.fixture(scope="module")
def ep(module_instances):
    return module_instances(ERROR_PAGES)


def test_error_page_keeps_the_error_status(ep):
    status, headers, body, _ = fetch(ep.port, "/missing")
    assert (status, body) == (404, b"custom")


def test_error_page_for_unmatched_path_via_server_defaults(ep):
    status, _, body, _ = fetch(ep.port, "/no/such/location")
    assert (status, body) == (404, b"custom")


def test_error_page_override_status(ep):
    status, _, body, _ = fetch(ep.port, "/eq200")
    assert (status, body) == (200, b"custom")
    status, _, body, _ = fetch(ep.port, "/eq201")
    assert (status, body) == (201, b"custom")


def test_error_page_uri_with_args_and_method_becomes_get(ep):
    status, _, body, _ = fetch(ep.port, "/with-args?orig=1", method="POST",
                               extra="Content-Length: 0\r\n")
    assert (status, body) == (404, b"echo uri=/echo args=from=error method=GET")


def test_error_page_equals_named_location_takes_its_status(ep):
    status, _, body, _ = fetch(ep.port, "/fallback")
    assert (status, body) == (201, b"fallback /fallback")


def test_error_page_named_location_without_equals_keeps_status(ep):
    status, _, body, _ = fetch(ep.port, "/fallback-keep")
    assert (status, body) == (500, b"fallback /fallback-keep")


def test_error_page_absolute_url_redirects(ep):
    status, headers, body, _ = fetch(ep.port, "/absolute")
    assert status == 302
    assert headers["location"] == "http://example.com/not-found"
    status, headers, body, _ = fetch(ep.port, "/absolute301")
    assert status == 301
    assert headers["location"] == "http://example.com/moved"


def test_error_page_pointing_to_itself_terminates(ep):
    # nginx (recursive_error_pages off): the second error is not redirected again.
    status, headers, body, elapsed = fetch(ep.port, "/self")
    assert status == 404
    assert json.loads(body)["status"] == 404
    assert elapsed < 2


def test_error_page_ping_pong_terminates(ep):
    status, headers, body, elapsed = fetch(ep.port, "/ping")
    assert status == 404 and elapsed < 2
    assert json.loads(body)["status"] == 404


def test_error_in_error_page_target_reports_its_own_status(ep):
    # nginx: the error raised while serving the error page replaces the first one (err_status is
    # set again by ngx_http_special_response_handler), so the client sees 500, and the body and
    # status agree.
    status, headers, body, elapsed = fetch(ep.port, "/chain")
    doc = json.loads(body)
    assert elapsed < 2
    assert status == doc["status"], (status, doc)
    assert status == 500


def test_error_page_to_missing_named_location_is_500(ep):
    status, headers, body, elapsed = fetch(ep.port, "/missing-named")
    assert status == 500 and elapsed < 2
    assert json.loads(body)["status"] == 500


def test_error_page_several_codes(ep):
    status, _, body, _ = fetch(ep.port, "/multi")
    assert (status, body) == (403, b"custom")


def test_error_page_inherited_and_overridden(ep):
    status, _, body, _ = fetch(ep.port, "/inherit/x")
    assert (status, body) == (404, b"custom")
    status, _, body, _ = fetch(ep.port, "/own/x")
    assert (status, body) == (404, b"echo uri=/echo args= method=GET")


def test_error_page_not_used_for_success(ep):
    status, _, body, _ = fetch(ep.port, "/noerror")
    assert (status, body) == (200, b"fine")


def test_error_page_with_head_request(ep):
    status, headers, body, _ = fetch(ep.port, "/missing", method="HEAD")
    assert status == 404 and body == b""
    assert headers["content-length"] == "6"


def test_error_page_keeps_keepalive(ep):
    with socket.create_connection(("127.0.0.1", ep.port), timeout=3) as s:
        s.sendall(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\nGET /eq200 HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    assert data.count(b"HTTP/1.1 ") == 2, data
    assert data.startswith(b"HTTP/1.1 404")
    assert b"\r\n\r\ncustomHTTP/1.1 200 OK\r\n" in data
    assert data.endswith(b"\r\n\r\ncustom")
