"""auth_introspect (RFC 7662) against the real binary, a real upstream and a real python
introspection endpoint (tests/integration/control_plane.py).

Covered: active tokens pass with $introspect_* variables forwarded (nested by dotted path);
inactive -> 401 invalid_token with a JSON body; no token -> 401 challenge; auth_introspect_require
(scope as a space-separated list, nested claims) -> 403 insufficient_scope; the cache (hits
counted at the endpoint, inactive answers cached too, off); exp honoured both in the reply
and as the cache bound; endpoint down / 500 / malformed JSON / no "active" / timeout -> 503 JSON
with Retry-After; HTTP Basic client authentication and the form body sent; concurrent requests
sharing one introspection; a custom token source; 2 workers; config errors; the token never in
the logs.
"""
import base64
import http.client
import json
import os
import threading
import time
import urllib.parse

import pytest

from control_plane import ControlPlane
from harness import free_port
from upstreams import EchoUpstream, wait_until


@pytest.fixture
def up():
    with EchoUpstream() as u:
        yield u


class Idp:
    """The introspection endpoint: answers by token from `self.tokens` (inactive otherwise)."""

    def __init__(self):
        self.tokens = {}
        self.mode = None  # None, "500", "malformed", "noactive", "hang"

    def __call__(self, method, path, headers, body):
        if self.mode == "500":
            return 500, {}, "down for maintenance"
        if self.mode == "malformed":
            return 200, {"Content-Type": "application/json"}, '{"active": tru'
        if self.mode == "noactive":
            return 200, {"Content-Type": "application/json"}, '{"sub": "x"}'
        if self.mode == "hang":
            return ("hang", 3)
        form = urllib.parse.parse_qs(body.decode())
        tok = form.get("token", [""])[0]
        reply = self.tokens.get(tok, {"active": False})
        return 200, {"Content-Type": "application/json"}, json.dumps(reply)


def tokens_asked(srv):
    out = []
    for method, path, headers, body in list(srv.requests):
        out.append(urllib.parse.parse_qs(body.decode()).get("token", [""])[0])
    return out


def make(factory, up, srv_url, loc="", http_extra="", workers=1, server=""):
    block = (
        "http {\n"
        f"{http_extra}\n"
        "    server {\n        listen 127.0.0.1:{port};\n"
        f"        auth_introspect {srv_url};\n"
        f"{server}\n"
        "        location / {\n"
        f"{loc}\n"
        "            proxy_set_header X-Sub $introspect_sub;\n"
        "            proxy_set_header X-Scope $introspect_scope;\n"
        "            proxy_set_header X-Team ${introspect_ext.team};\n"
        "            proxy_set_header X-Status $introspect_status;\n"
        f"            proxy_pass http://{up.addr};\n"
        "        }\n    }\n}\n"
    )
    t = factory(block, workers=workers)
    t.start()
    return t


def request(t, path="/", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def upstream_headers(body):
    out = {}
    for k, v in json.loads(body)["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def active(sub="alice", scope="read write", **extra):
    d = {"active": True, "sub": sub, "scope": scope, "client_id": "app1",
         "exp": int(time.time()) + 3600}
    d.update(extra)
    return d


def test_active_inactive_and_missing(tollgate_factory, up):
    idp = Idp()
    idp.tokens["tok-alice"] = active(ext={"team": "core"})
    with ControlPlane(idp) as srv:
        t = make(tollgate_factory, up, srv.url("/introspect"))
        status, _, body = request(t, "/x", bearer("tok-alice"))
        assert status == 200, body
        h = upstream_headers(body)
        assert h["x-sub"] == ["alice"]
        assert h["x-scope"] == ["read write"]
        assert h["x-team"] == ["core"]
        assert h["x-status"] == ["active"]

        status, h, body = request(t, "/x", bearer("tok-unknown"))
        assert status == 401, body
        assert h["content-type"] == "application/json"
        assert json.loads(body)["status"] == 401
        assert h["www-authenticate"] == \
            'Bearer error="invalid_token", error_description="token is not active"'

        status, h, body = request(t, "/x")
        assert status == 401
        assert h["www-authenticate"] == "Bearer"
        t.stop()
        log = t.error_log()
        assert "token is not active" in log
        assert "tok-unknown" not in log and "tok-alice" not in log


def test_request_form_and_client_auth(tollgate_factory, up, tmp_path):
    idp = Idp()
    weird = "a+b/c=d e&f"
    idp.tokens[weird] = active()
    secret = tmp_path / "client.secret"
    secret.write_text("s3cr:et&x\n")
    os.chmod(tmp_path, 0o755)
    with ControlPlane(idp) as srv:
        loc = ("auth_introspect_client_id gate-1;\n"
               f"auth_introspect_client_secret {secret};\n")
        t = make(tollgate_factory, up, srv.url("/oauth/introspect"), loc=loc)
        assert request(t, "/", bearer(weird))[0] == 200
        method, path, headers, body = srv.requests[-1]
        assert method == "POST" and path == "/oauth/introspect"
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        form = urllib.parse.parse_qs(body.decode())
        assert form == {"token": [weird], "token_type_hint": ["access_token"]}
        kind, cred = headers["authorization"].split(" ", 1)
        assert kind == "Basic"
        user, _, pw = base64.b64decode(cred).decode().partition(":")
        assert urllib.parse.unquote_plus(user) == "gate-1"
        assert urllib.parse.unquote_plus(pw) == "s3cr:et&x"
        t.stop()
        assert "s3cr" not in t.error_log()


def test_require_scope_is_403(tollgate_factory, up):
    idp = Idp()
    idp.tokens["reader"] = active(scope="read")
    idp.tokens["writer"] = active(scope="read write", ext={"team": "core"})
    idp.tokens["outsider"] = active(scope="read write", ext={"team": "web"})
    with ControlPlane(idp) as srv:
        server = (
            "        location /write {\n"
            "            auth_introspect_require scope write;\n"
            "            auth_introspect_require ext.team core;\n"
            f"            proxy_pass http://{up.addr};\n"
            "        }\n")
        t = make(tollgate_factory, up, srv.url("/i"), server=server)
        assert request(t, "/write", bearer("writer"))[0] == 200
        for tok, why in (("reader", "required claim value missing"),
                         ("outsider", "required claim value missing")):
            status, h, body = request(t, "/write", bearer(tok))
            assert status == 403, body
            assert json.loads(body)["status"] == 403
            assert h["www-authenticate"] == \
                f'Bearer error="insufficient_scope", error_description="{why}"'
        idp.tokens["noscope"] = {"active": True, "sub": "x"}
        status, h, _ = request(t, "/write", bearer("noscope"))
        assert status == 403 and "required claim missing" in h["www-authenticate"]
        assert request(t, "/", bearer("reader"))[0] == 200


def test_cache_hits_counted_at_the_endpoint(tollgate_factory, up):
    idp = Idp()
    idp.tokens["tok"] = active()
    with ControlPlane(idp) as srv:
        t = make(tollgate_factory, up, srv.url("/i"),
                 http_extra="    auth_introspect_cache max=100 valid=1h;")
        for _ in range(5):
            assert request(t, "/", bearer("tok"))[0] == 200
        for _ in range(5):
            assert request(t, "/", bearer("bad"))[0] == 401
        assert tokens_asked(srv).count("tok") == 1
        assert tokens_asked(srv).count("bad") == 1  # inactive answers are cached too (10 s)
        # Revoked at the IdP: the cached answer holds until it expires (documented).
        idp.tokens["tok"] = {"active": False}
        assert request(t, "/", bearer("tok"))[0] == 200

    with ControlPlane(idp) as srv2:
        idp.tokens["tok"] = active()
        t2 = make(tollgate_factory, up, srv2.url("/i"),
                  http_extra="    auth_introspect_cache off;")
        for _ in range(3):
            assert request(t2, "/", bearer("tok"))[0] == 200
        assert tokens_asked(srv2).count("tok") == 3


def test_exp_is_honoured(tollgate_factory, up):
    idp = Idp()
    now = int(time.time())
    idp.tokens["old"] = active(exp=now - 5)
    idp.tokens["short"] = active(exp=now + 2)
    with ControlPlane(idp) as srv:
        t = make(tollgate_factory, up, srv.url("/i"))
        status, h, _ = request(t, "/", bearer("old"))
        assert status == 401
        assert 'error_description="token expired"' in h["www-authenticate"]
        assert request(t, "/", bearer("short"))[0] == 200
        assert request(t, "/", bearer("short"))[0] == 200
        assert tokens_asked(srv).count("short") == 1
        # The cache never outlives exp: after it, the endpoint is asked again.
        idp.tokens["short"] = {"active": False}
        assert wait_until(lambda: request(t, "/", bearer("short"))[0] == 401, timeout=10,
                          interval=0.3)
        assert tokens_asked(srv).count("short") == 2


@pytest.mark.parametrize("mode,reason", [
    ("down", "connect failed"),
    ("500", "status 500"),
    ("malformed", "not a JSON object"),
    ("noactive", "no boolean"),
    ("hang", "timeout"),
])
def test_endpoint_failures_are_503(tollgate_factory, up, mode, reason):
    idp = Idp()
    idp.tokens["tok"] = active()
    port = free_port()
    with ControlPlane(idp, port=port) as srv:
        if mode == "down":
            srv.stop()
        else:
            idp.mode = mode
        t = make(tollgate_factory, up, f"http://127.0.0.1:{port}/i",
                 loc="auth_introspect_timeout 500ms;")
        status, h, body = request(t, "/", bearer("tok"))
        assert status == 503, body
        assert h["content-type"] == "application/json"
        assert json.loads(body)["status"] == 503
        assert h["retry-after"] == "5"
        # Failures are not cached: once the endpoint is fine, the token passes.
        if mode != "down":
            idp.mode = None
            assert wait_until(lambda: request(t, "/", bearer("tok"))[0] == 200, timeout=10)
        t.stop()
        log = t.error_log()
        assert "introspection failed: " in log and reason in log, log[-2000:]
        assert "tok\"" not in log


def test_concurrent_requests_share_one_introspection(tollgate_factory, up):
    idp = Idp()
    idp.tokens["tok"] = active()
    gate = threading.Event()

    def slow(*args):
        gate.wait(5)
        return idp(*args)

    with ControlPlane(slow) as srv:
        t = make(tollgate_factory, up, srv.url("/i"))
        results = []

        def one():
            results.append(request(t, "/", bearer("tok"))[0])

        threads = [threading.Thread(target=one) for _ in range(6)]
        for th in threads:
            th.start()
        assert wait_until(lambda: srv.count() >= 1, timeout=10)
        time.sleep(0.3)  # let the other requests arrive and join the one under way
        gate.set()
        for th in threads:
            th.join(timeout=15)
        assert results == [200] * 6
        assert srv.count() == 1


def test_token_source_and_two_workers(tollgate_factory, up):
    idp = Idp()
    for i in range(20):
        idp.tokens[f"k{i}"] = active(sub=f"user{i}")
    with ControlPlane(idp) as srv:
        t = make(tollgate_factory, up, srv.url("/i"), workers=2,
                 loc="auth_introspect_token $http_x_api_token;")
        assert len(t.worker_pids()) == 2
        for i in range(20):
            status, _, body = request(t, "/", {"X-Api-Token": f"k{i}"})
            assert status == 200, body
            assert upstream_headers(body)["x-sub"] == [f"user{i}"]
        # The Bearer header is not what this location reads.
        assert request(t, "/", bearer("k1"))[0] == 401
        assert request(t, "/", {"X-Api-Token": "nope"})[0] == 401


def test_off_in_a_location(tollgate_factory, up):
    idp = Idp()
    with ControlPlane(idp) as srv:
        server = ("        location /public {\n            auth_introspect off;\n"
                  f"            proxy_pass http://{up.addr};\n"
                  "        }\n")
        t = make(tollgate_factory, up, srv.url("/i"), server=server)
        assert request(t, "/public")[0] == 200
        assert request(t, "/")[0] == 401
        assert srv.count() == 0


@pytest.mark.parametrize("directive,error", [
    ("auth_introspect ftp://x/;", "the URL must start with http:// or https://"),
    ("auth_introspect http://127.0.0.1/ ssl_verify=off;", "need an https URL"),
    ("auth_introspect http://127.0.0.1/ bogus;", 'invalid value "bogus"'),
    ("auth_introspect_client_secret /nonexistent/secret;", "open() \"/nonexistent/secret\""),
    ("auth_introspect_require $x;", "not a variable"),
    ("auth_introspect_timeout 0;", 'invalid value "0"'),
])
def test_config_errors(tollgate_factory, directive, error):
    block = ("http {\n    server {\n        listen 127.0.0.1:{port};\n"
             f"        {directive}\n"
             "        location / { }\n    }\n}\n")
    t = tollgate_factory(block)
    code, err = t.test_config()
    assert code == 1
    assert "tollgate.conf:10:" in err and error in err, err
