"""auth_request, auth_request_set, auth_request_cache and `satisfy` against the real binary.

The auth server is a real HTTP server here (AuthUpstream): it decides on the X-Token header and
counts the requests that reach it, which is how the cache is verified. The protected locations
proxy to a real EchoUpstream, which shows what the gateway forwarded (X-User from
auth_request_set). JWTs for the satisfy tests are HS256 tokens made with the standard library's
hmac; API keys come from `tollgate key add`.

Covered: allow; 401 with the auth server's WWW-Authenticate; 403; the auth server's 500/502, a
refused connection and a timeout (proxy_read_timeout) -> 500; auth_request_set carried into a
proxied header; method and headers reach the auth server, the body does not; the cache (hits
counted at the auth server, TTL expiry, different keys miss, 401 cached, 5xx never, an empty key
bypasses); two workers; a client leaving while the auth request is pending (the worker still
serves and the subrequest is cancelled); satisfy any / all with auth_key, auth_jwt and
auth_request; config errors at file:line.
"""
import base64
import collections
import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from harness import BINARY
from upstreams import EchoUpstream, RefusedPort, _Server, response_head, wait_until

SECRET = b"a-test-secret-of-32-bytes-length"


class AuthUpstream(_Server):
    """An auth server. /check: X-Token "good-USER" -> 200 with X-User: USER; "forbidden" -> 403;
    anything else (or none) -> 401 with a WWW-Authenticate challenge. /slow: answers 200 after 3 s
    unless the gateway closes the connection first.
    /status/N: answers N. Keeps connections alive; counts requests per token."""

    def __init__(self):
        self.tokens = collections.Counter()
        self.log = collections.deque(maxlen=1000)
        super().__init__()

    def handle(self, conn):
        for _ in range(10_000):
            method, target, version, headers = conn.read_head()
            h = {k.lower(): v for k, v in headers}
            self.count_request()
            token = h.get("x-token", "")
            with self.lock:
                self.tokens[token] += 1
                self.log.append({"method": method, "target": target, "headers": h})
            path = target.partition("?")[0]
            extra = []
            status = 200
            if path.startswith("/slow"):
                # Waits 3 s, but notices at once when the gateway closes the connection.
                conn.sock.settimeout(3.0)
                try:
                    if not conn.sock.recv(1):
                        return
                except socket.timeout:
                    pass
                conn.sock.settimeout(self.conn_timeout)
            elif path.startswith("/status/"):
                status = int(path.rsplit("/", 1)[1])
            elif token.startswith("good-"):
                extra = [("X-User", token[5:]), ("X-Scope", "read write")]
            elif token == "forbidden":
                status = 403
            else:
                status = 401
                extra = [("WWW-Authenticate", 'Bearer realm="auth-server", error="invalid_token"')]
            body = json.dumps({"status": status}).encode()
            conn.sendall(response_head(status, [("Content-Type", "application/json"),
                                                ("Content-Length", len(body))] + extra) + body)


@pytest.fixture
def up():
    with EchoUpstream() as u:
        yield u


@pytest.fixture
def auth():
    with AuthUpstream() as a:
        yield a


def make(factory, up, auth, body, http_extra="", workers=1, start=True):
    block = (
        "http {\n"
        "    log_format ar '$request_uri $status cache=$auth_request_cache_status';\n"
        "    access_log logs/access.log ar;\n"
        f"{http_extra}\n"
        "    server {\n        listen 127.0.0.1:{port};\n"
        f"        location = /auth {{ internal; proxy_pass http://{auth.addr}/check;\n"
        "            proxy_read_timeout 2s; }\n"
        f"        location = /auth-slow {{ internal; proxy_pass http://{auth.addr}/slow;\n"
        "            proxy_read_timeout 300ms; }\n"
        f"        location /auth-status/ {{ internal; proxy_pass http://{auth.addr}/status/; }}\n"
        + body.replace("UP", up.addr) + "\n    }\n}\n"
    )
    t = factory(block, workers=workers)
    if start:
        t.start()
    return t


PROTECTED = """
        location /api/ {
            auth_request /auth;
            auth_request_set $auth_user $upstream_http_x_user;
            auth_request_set $auth_scope "[$upstream_http_x_scope]";
            proxy_set_header X-User $auth_user;
            proxy_set_header X-Scope $auth_scope;
            proxy_pass http://UP;
        }
        location /open/ { proxy_pass http://UP; }
"""


def request(t, path="/api/x", headers=None, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def upstream_headers(body):
    info = json.loads(body)
    return {k.lower(): v for k, v in info["headers"]}, info


def error_json(body):
    doc = json.loads(body)
    assert set(doc) == {"error", "message", "status", "request_id"}, doc
    return doc


# ---- allow, deny, errors ------------------------------------------------------------------------


def test_allow_carries_auth_request_set_into_proxied_headers(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, PROTECTED)
    s, _, body = request(t, "/api/x?a=1", {"X-Token": "good-alice", "X-User": "mallory"})
    assert s == 200
    h, info = upstream_headers(body)
    assert h["x-user"] == "alice"  # the client's own X-User is replaced
    assert h["x-scope"] == "[read write]"
    assert info["target"] == "/api/x?a=1"
    assert auth.requests == 1
    seen = auth.log[0]
    assert seen["method"] == "GET" and seen["target"] == "/check"
    assert seen["headers"]["x-token"] == "good-alice"
    assert len(up.log) == 1


def test_method_and_headers_reach_the_auth_server_but_not_the_body(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, PROTECTED)
    s, _, body = request(t, "/api/post", {"X-Token": "good-bob", "X-Extra": "e"}, "POST",
                         b"p" * 5000)
    assert s == 200
    seen = auth.log[0]
    assert seen["method"] == "POST" and seen["headers"]["x-extra"] == "e"
    assert "content-length" not in seen["headers"] and "transfer-encoding" not in seen["headers"]
    _, info = upstream_headers(body)
    assert info["body_len"] == 5000  # the main request still gets its whole body


def test_deny_401_passes_www_authenticate(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, PROTECTED)
    for headers in ({}, {"X-Token": "wrong"}):
        s, h, body = request(t, "/api/x", headers)
        assert s == 401
        assert h["www-authenticate"] == 'Bearer realm="auth-server", error="invalid_token"'
        assert h["content-type"] == "application/json"
        assert error_json(body)["status"] == 401
    assert len(up.log) == 0


def test_deny_403(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, PROTECTED)
    s, h, body = request(t, "/api/x", {"X-Token": "forbidden"})
    assert s == 403 and "www-authenticate" not in h
    assert error_json(body)["error"] == "forbidden"
    assert len(up.log) == 0


@pytest.mark.parametrize("status", [500, 502, 404, 302, 400])
def test_other_auth_statuses_are_500(tollgate_factory, up, auth, status):
    t = make(tollgate_factory, up, auth, f"""
        location /api/ {{ auth_request /auth-status/{status}; proxy_pass http://UP; }}
    """)
    s, _, body = request(t, "/api/x", {"X-Token": "good-alice"})
    assert s == 500 and error_json(body)["status"] == 500
    assert len(up.log) == 0
    assert wait_until(lambda: f"auth request unexpected status: {status}" in t.error_log())


def test_refused_auth_server_is_500(tollgate_factory, up, auth):
    with RefusedPort() as refused:
        t = make(tollgate_factory, up, auth, f"""
            location = /auth-refused {{ internal; proxy_pass http://127.0.0.1:{refused.port}; }}
            location /api/ {{ auth_request /auth-refused; proxy_pass http://UP; }}
        """)
        s, _, body = request(t, "/api/x", {"X-Token": "good-alice"})
        assert s == 500 and error_json(body)["status"] == 500
        assert len(up.log) == 0
        assert request(t, "/api/y")[0] == 500  # and again: nothing stuck


def test_timeout_is_500_bounded_by_proxy_read_timeout(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, """
        location /api/ { auth_request /auth-slow; proxy_pass http://UP; }
    """)
    start = time.monotonic()
    s, _, _ = request(t, "/api/x", {"X-Token": "good-alice"})
    assert s == 500
    assert time.monotonic() - start < 2.5  # well before the auth server's 3 s answer
    assert len(up.log) == 0
    assert wait_until(lambda: "timed out" in t.error_log())


def test_auth_request_off_and_unprotected(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, """
        auth_request /auth;
        location /api/ { proxy_pass http://UP; }
        location /free/ { auth_request off; proxy_pass http://UP; }
    """)
    assert request(t, "/api/x")[0] == 401  # inherited from the server
    assert request(t, "/api/x", {"X-Token": "good-a"})[0] == 200
    assert request(t, "/free/x")[0] == 200
    assert auth.requests == 2


def test_unset_variable_is_empty_and_client_copy_dropped(tollgate_factory, up, auth):
    # auth_request_set where the auth server sends no X-User: the variable is set, empty.
    t = make(tollgate_factory, up, auth, """
        location /api/ {
            auth_request /auth-status/204;
            auth_request_set $auth_user $upstream_http_x_user;
            proxy_set_header X-User $auth_user;
            proxy_pass http://UP;
        }
    """)
    s, _, body = request(t, "/api/x", {"X-User": "mallory"})
    assert s == 200
    h, _ = upstream_headers(body)
    assert "x-user" not in h


def test_error_page_for_a_denial(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, PROTECTED + """
        error_page 401 /login;
        location = /login { return 200 "please log in"; }
    """)
    s, _, body = request(t, "/api/x")
    assert s == 401 and body == b"please log in"


# ---- the cache ----------------------------------------------------------------------------------


CACHED = """
        location /api/ {
            auth_request /auth;
            auth_request_set $auth_user $upstream_http_x_user;
            auth_request_cache $http_x_token valid=%s max=%d;
            proxy_set_header X-User $auth_user;
            proxy_pass http://UP;
        }
        location /status/ {
            auth_request /auth-status/503;
            auth_request_cache $http_x_token;
            proxy_pass http://UP;
        }
"""


def access_lines(t):
    try:
        with open(t.path("logs", "access.log")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def test_cache_hits_are_not_sent_to_the_auth_server(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, CACHED % ("1h", 100))
    for _ in range(5):
        s, _, body = request(t, "/api/x", {"X-Token": "good-alice"})
        assert s == 200 and upstream_headers(body)[0]["x-user"] == "alice"  # values cached too
    assert auth.tokens["good-alice"] == 1
    # A different credential misses, then hits.
    for _ in range(3):
        assert request(t, "/api/x", {"X-Token": "good-bob"})[0] == 200
    assert auth.tokens["good-bob"] == 1
    # Denials are cached too, with their challenge.
    for _ in range(3):
        s, h, _ = request(t, "/api/x", {"X-Token": "nope"})
        assert s == 401 and 'realm="auth-server"' in h["www-authenticate"]
    assert auth.tokens["nope"] == 1
    for _ in range(2):
        assert request(t, "/api/x", {"X-Token": "forbidden"})[0] == 403
    assert auth.tokens["forbidden"] == 1
    # No key: never cached (BYPASS), every request asks.
    for _ in range(3):
        assert request(t, "/api/x")[0] == 401
    assert auth.tokens[""] == 3
    assert auth.requests == 7
    assert wait_until(lambda: len(access_lines(t)) == 16)
    statuses = [line.split("cache=")[1] for line in access_lines(t)]
    assert statuses.count("HIT") == 9 and statuses.count("MISS") == 4
    assert statuses.count("BYPASS") == 3


def test_cache_entries_expire(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, CACHED % ("300ms", 100))
    assert request(t, "/api/x", {"X-Token": "good-alice"})[0] == 200
    assert request(t, "/api/x", {"X-Token": "good-alice"})[0] == 200
    assert auth.tokens["good-alice"] == 1
    time.sleep(0.5)
    assert request(t, "/api/x", {"X-Token": "good-alice"})[0] == 200
    assert auth.tokens["good-alice"] == 2


def test_cache_is_bounded_by_max(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, CACHED % ("1h", 2))
    for user in ("a", "b", "c"):  # c evicts a, the least recently used
        assert request(t, "/api/x", {"X-Token": f"good-{user}"})[0] == 200
    assert request(t, "/api/x", {"X-Token": "good-c"})[0] == 200
    assert request(t, "/api/x", {"X-Token": "good-a"})[0] == 200
    assert auth.tokens["good-c"] == 1 and auth.tokens["good-a"] == 2


def test_errors_are_never_cached(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, CACHED % ("1h", 100))
    for _ in range(3):
        assert request(t, "/status/x", {"X-Token": "good-alice"})[0] == 500
    assert auth.requests == 3


def test_cache_never_stores_the_credential_in_logs(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, CACHED % ("1h", 100))
    secret = "good-sekrit-token-value"
    assert request(t, "/api/x", {"X-Token": secret})[0] == 200
    t.stop()
    assert secret not in t.error_log()


def test_two_workers(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, CACHED % ("1h", 100), workers=2)
    results = []

    def client(i):
        for j in range(10):
            s, _, body = request(t, "/api/x", {"X-Token": f"good-u{i}"})
            results.append((s, upstream_headers(body)[0].get("x-user") if s == 200 else None, i))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert len(results) == 40
    assert all(s == 200 and user == f"u{i}" for s, user, i in results)
    # Per-worker caches: each token reaches the auth server at most once per worker.
    assert all(1 <= auth.tokens[f"good-u{i}"] <= 2 for i in range(4))


def test_concurrent_pending_auth_requests(tollgate_factory, up, auth):
    # Many requests wait on the slow auth location at once; the worker serves others meanwhile.
    t = make(tollgate_factory, up, auth, PROTECTED + """
        location /slow/ { auth_request /auth-slow; proxy_pass http://UP; }
    """)
    results = []

    def slow():
        results.append(request(t, "/slow/x", {"X-Token": "good-a"})[0])

    threads = [threading.Thread(target=slow) for _ in range(8)]
    for th in threads:
        th.start()
    time.sleep(0.05)
    assert request(t, "/open/x")[0] == 200  # not blocked by the pending subrequests
    for th in threads:
        th.join(timeout=10)
    assert results == [500] * 8


# ---- a client that leaves -----------------------------------------------------------------------


def test_client_closing_while_auth_pending(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, f"""
        location = /auth-slow-long {{ internal; proxy_pass http://{auth.addr}/slow;
            proxy_read_timeout 10s; }}
        location /slowlong/ {{ auth_request /auth-slow-long; proxy_pass http://UP; }}
        location /open/ {{ proxy_pass http://UP; }}
    """)
    for i in range(5):
        s = socket.create_connection(("127.0.0.1", t.port))
        s.sendall(b"GET /slowlong/x HTTP/1.1\r\nHost: a\r\nX-Token: good-a\r\n\r\n")
        assert wait_until(lambda: auth.requests >= i + 1)
        s.close()  # while the subrequest waits on the auth server
    # The worker still serves, and the abandoned subrequests were cancelled: their connections
    # to the auth server closed long before it would have answered.
    assert request(t, "/open/x")[0] == 200
    assert wait_until(lambda: auth.closed_connections >= 5, timeout=2.5)
    assert wait_until(lambda: "client prematurely closed connection" in t.error_log())
    assert len(up.log) == 1


# ---- satisfy ------------------------------------------------------------------------------------


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims):
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64u(
        json.dumps(claims).encode())
    return head + "." + b64u(hmac.new(SECRET, head.encode(), hashlib.sha256).digest())


def jwt(sub="alice", **extra):
    claims = {"sub": sub, "iat": int(time.time()) - 10, "exp": int(time.time()) + 3600}
    claims.update(extra)
    return hs256(claims)


@pytest.fixture
def creds(tmp_path):
    os.chmod(tmp_path, 0o755)
    store = str(tmp_path / "keys.txt")
    r = subprocess.run([BINARY, "key", "add", "--store", store, "--consumer", "acme"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(SECRET)
    os.chmod(secret, 0o644)
    return {"store": store, "key": r.stdout.strip(), "secret": str(secret)}


def satisfy_conf(creds, mode, checks):
    parts = []
    if "key" in checks:
        parts.append("auth_key on;")
    if "jwt" in checks:
        parts.append(f'auth_jwt "api"; auth_jwt_secret {creds["secret"]};')
    if "req" in checks:
        parts.append("auth_request /auth;")
    satisfy = f"satisfy {mode};" if mode else ""
    return f"""
        location /api/ {{
            {satisfy}
            {" ".join(parts)}
            proxy_pass http://UP;
        }}
    """


def make_satisfy(factory, up, auth, creds, mode, checks):
    return make(factory, up, auth, satisfy_conf(creds, mode, checks),
                http_extra=f"    auth_key_store {creds['store']};")


def test_satisfy_any_key_or_jwt(tollgate_factory, up, auth, creds):
    t = make_satisfy(tollgate_factory, up, auth, creds, "any", ("key", "jwt"))
    key_h = {"X-API-Key": creds["key"]}
    jwt_h = {"Authorization": "Bearer " + jwt()}
    assert request(t, "/api/x", key_h)[0] == 200
    assert request(t, "/api/x", jwt_h)[0] == 200
    assert request(t, "/api/x", {**key_h, **jwt_h})[0] == 200
    # A bad key but a good token passes, and the other way round.
    assert request(t, "/api/x", {"X-API-Key": "tg_bad", **jwt_h})[0] == 200
    assert request(t, "/api/x", {**key_h, "Authorization": "Bearer x.y.z"})[0] == 200
    # Neither: 401 with a challenge, no headers from the other denial mixed in.
    s, h, body = request(t, "/api/x")
    assert s == 401 and error_json(body)["status"] == 401
    assert h["www-authenticate"].startswith(("ApiKey", "Bearer"))
    assert len(up.log) == 5


def test_satisfy_all_is_the_default(tollgate_factory, up, auth, creds):
    for mode in ("", "all"):
        t = make_satisfy(tollgate_factory, up, auth, creds, mode, ("key", "jwt"))
        key_h = {"X-API-Key": creds["key"]}
        jwt_h = {"Authorization": "Bearer " + jwt()}
        assert request(t, "/api/x", key_h)[0] == 401  # the JWT is missing
        assert request(t, "/api/x", jwt_h)[0] == 401  # the key is missing
        assert request(t, "/api/x", {**key_h, **jwt_h})[0] == 200
        t.stop()


def test_satisfy_any_with_auth_request(tollgate_factory, up, auth, creds):
    t = make_satisfy(tollgate_factory, up, auth, creds, "any", ("key", "jwt", "req"))
    # The key allows: auth_request is skipped (the auth server is never asked).
    assert request(t, "/api/x", {"X-API-Key": creds["key"]})[0] == 200
    assert request(t, "/api/x", {"Authorization": "Bearer " + jwt()})[0] == 200
    assert auth.requests == 0
    # Only the auth server allows.
    assert request(t, "/api/x", {"X-Token": "good-a"})[0] == 200
    assert auth.requests == 1
    # All deny: 401 (preferred over auth_request's 403).
    s, h, _ = request(t, "/api/x", {"X-Token": "forbidden"})
    assert s == 401
    # An auth server error stops at once, even under any.
    t2 = make(tollgate_factory, up, auth, """
        location /api/ { satisfy any; auth_request /auth-status/502; auth_jwt "api"; auth_jwt_secret SECRET; proxy_pass http://UP; }
    """.replace("SECRET", creds["secret"]))
    assert request(t2, "/api/x", {"Authorization": "Bearer " + jwt()})[0] == 200  # jwt first
    assert request(t2, "/api/x")[0] == 500


def test_satisfy_any_403_only(tollgate_factory, up, auth, creds):
    t = make(tollgate_factory, up, auth, f"""
        location /api/ {{
            satisfy any;
            auth_jwt "api"; auth_jwt_secret {creds["secret"]}; auth_jwt_require role admin;
            auth_request /auth;
            proxy_pass http://UP;
        }}
    """)
    # The JWT is valid but lacks the role (403); the auth server forbids (403): 403.
    h = {"Authorization": "Bearer " + jwt(role="user"), "X-Token": "forbidden"}
    s, hdrs, _ = request(t, "/api/x", h)
    assert s == 403
    assert 'error="insufficient_scope"' in hdrs["www-authenticate"]  # the denial's own headers
    # auth_request's 401 wins over auth_jwt's 403, with the auth server's challenge.
    h = {"Authorization": "Bearer " + jwt(role="user"), "X-Token": "nope"}
    s, hdrs, _ = request(t, "/api/x", h)
    assert s == 401 and 'realm="auth-server"' in hdrs["www-authenticate"]
    h = {"Authorization": "Bearer " + jwt(role="admin"), "X-Token": "nope"}
    assert request(t, "/api/x", h)[0] == 200


def test_satisfy_any_with_no_applicable_check_serves(tollgate_factory, up, auth, creds):
    t = make(tollgate_factory, up, auth, """
        satisfy any;
        location /api/ { proxy_pass http://UP; }
    """, http_extra=f"    auth_key_store {creds['store']};")
    assert request(t, "/api/x")[0] == 200


def test_satisfy_any_keeps_precontent_handlers(tollgate_factory, up, auth, creds):
    # mirror runs in PreContent: an Allow that skips the remaining Access checks never skips it.
    with EchoUpstream() as shadow:
        t = make(tollgate_factory, up, auth, f"""
            location = /shadow {{ internal; proxy_pass http://{shadow.addr}; }}
            location /api/ {{
                satisfy any; auth_key on; auth_request /auth; mirror /shadow;
                proxy_pass http://UP;
            }}
        """, http_extra=f"    auth_key_store {creds['store']};")
        assert request(t, "/api/x", {"X-API-Key": creds["key"]})[0] == 200
        assert wait_until(lambda: len(shadow.log) == 1)
        assert auth.requests == 0


# ---- config errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("directive,message", [
    ("auth_request auth;", 'invalid value "auth" in "auth_request" directive'),
    ("auth_request /a /b;", 'invalid number of arguments in "auth_request" directive'),
    ("auth_request /a; auth_request /b;", '"auth_request" directive is duplicate'),
    ("auth_request_set user $upstream_http_x;", 'invalid value "user" in "auth_request_set"'),
    ("auth_request_set $uri $upstream_http_x;", 'the duplicate "uri" variable'),
    ("auth_request_set $u $nosuchvar;", 'unknown "nosuchvar" variable'),
    ("auth_request_set $u;", 'invalid number of arguments in "auth_request_set" directive'),
    ("auth_request_cache $http_x valid=soon;", 'invalid value "valid=soon"'),
    ("auth_request_cache $http_x valid=0;", 'invalid value "valid=0"'),
    ("auth_request_cache $http_x max=0;", 'invalid value "max=0"'),
    ("auth_request_cache $http_x size=1;", 'invalid value "size=1"'),
    ("auth_request_cache literal;", 'invalid value "literal"'),
    ("auth_request_cache off valid=1s;", "invalid number of arguments"),
    ("satisfy some;", 'invalid value "some" in "satisfy" directive'),
    ("satisfy any; satisfy all;", '"satisfy" directive is duplicate'),
])
def test_config_errors_name_file_and_line(tollgate_factory, up, auth, directive, message):
    t = make(tollgate_factory, up, auth, f"        location /x/ {{\n            {directive}\n        }}",
             start=False)
    code, err = t.test_config()
    assert code != 0
    assert f"{t.conf_path}:" in err and message in err, err


def test_auth_request_in_http_context_and_set_before_use(tollgate_factory, up, auth):
    t = make(tollgate_factory, up, auth, """
        location /api/ { proxy_set_header X-User $auth_user; proxy_pass http://UP; }
    """, http_extra="    auth_request /auth;\n    auth_request_set $auth_user $upstream_http_x_user;")
    s, _, body = request(t, "/api/x", {"X-Token": "good-carol"})
    assert s == 200 and upstream_headers(body)[0]["x-user"] == "carol"


def test_subrequest_path_is_the_auth_uri_without_args(tollgate_factory, up, auth):
    # proxy_pass without a URI part sends the subrequest's own path, no args (as nginx).
    t = make(tollgate_factory, up, auth, f"""
        location = /auth-plain {{ internal; proxy_pass http://{auth.addr}; }}
        location /api/ {{ auth_request /auth-plain; proxy_pass http://UP; }}
    """)
    assert request(t, "/api/x?a=1&b=2", {"X-Token": "good-a"})[0] == 200
    assert auth.log[0]["target"] == "/auth-plain"
    assert request(t, "/api/y?", {"X-Token": "good-a"})[0] == 200
    assert auth.log[1]["target"] == "/auth-plain"


def test_request_uri_in_the_auth_location_is_the_clients(tollgate_factory, up, auth):
    # nginx's usual idiom: tell the auth server what was asked for.
    t = make(tollgate_factory, up, auth, f"""
        location = /auth-orig {{ internal; proxy_pass http://{auth.addr}/check;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method; }}
        location /api/ {{ auth_request /auth-orig; proxy_pass http://UP; }}
    """)
    assert request(t, "/api/x?a=1", {"X-Token": "good-a"}, "DELETE")[0] == 200
    seen = auth.log[0]["headers"]
    assert seen["x-original-uri"] == "/api/x?a=1" and seen["x-original-method"] == "DELETE"


def test_satisfy_any_denial_goes_to_error_page_with_its_challenge(tollgate_factory, up, auth, creds):
    t = make(tollgate_factory, up, auth, f"""
        location /api/ {{
            satisfy any; auth_key on; auth_request /auth;
            error_page 401 /login;
            proxy_pass http://UP;
        }}
        location = /login {{ return 200 "please log in"; }}
    """, http_extra=f"    auth_key_store {creds['store']};")
    s, h, body = request(t, "/api/x", {"X-Token": "nope"})
    assert s == 401 and body == b"please log in"
    assert h["www-authenticate"].startswith("ApiKey")  # the first 401 is the one sent
    assert request(t, "/api/x", {"X-Token": "good-a"})[0] == 200


def test_satisfy_all_stops_at_the_first_denial(tollgate_factory, up, auth, creds):
    t = make_satisfy(tollgate_factory, up, auth, creds, "all", ("key", "req"))
    assert request(t, "/api/x", {"X-Token": "good-a"})[0] == 401  # no key: auth server not asked
    assert auth.requests == 0
    assert request(t, "/api/x", {"X-Token": "good-a", "X-API-Key": creds["key"]})[0] == 200
    assert request(t, "/api/x", {"X-Token": "forbidden", "X-API-Key": creds["key"]})[0] == 403
    assert auth.requests == 2


def test_satisfy_any_never_lets_a_forged_identity_header_through(tollgate_factory, up, auth, creds):
    # auth_key allows first and auth_jwt is skipped: the client's X-User-Id must still be gone,
    # because identity headers are stripped in the Rewrite phase, not by the Access checks.
    body = satisfy_conf(creds, "any", ("key", "jwt", "req")).replace(
        "satisfy any;", "satisfy any; auth_jwt_claim_header X-User-Id sub;")
    t = make(tollgate_factory, up, auth, body, http_extra=f"    auth_key_store {creds['store']};")
    forged = {"X-User-Id": "root", "X-Consumer-Id": "root"}
    s, _, b = request(t, "/api/x", {"X-API-Key": creds["key"], **forged})
    assert s == 200, b
    h, _ = upstream_headers(b)
    assert "x-user-id" not in h
    assert h["x-consumer-id"] == "acme"
    s, _, b = request(t, "/api/x", {"Authorization": "Bearer " + jwt("bob"), **forged})
    assert s == 200, b
    h, _ = upstream_headers(b)
    assert h["x-user-id"] == "bob"
    assert "x-consumer-id" not in h
    # Only the auth server allows: neither forged copy survives either.
    s, _, b = request(t, "/api/x", {"X-Token": "good-carol", **forged})
    assert s == 200, b
    h, _ = upstream_headers(b)
    assert "x-user-id" not in h and "x-consumer-id" not in h
