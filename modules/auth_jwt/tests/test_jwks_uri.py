"""auth_jwt_jwks_uri against the real binary and a real JWKS server (python http.server, with
TLS from a test CA made with the openssl CLI). Tokens are minted as in test_auth_jwt.py.

Covered: rotation through the URI with no reload (a new kid is fetched early and the request
waits for it; a key removed from the JWKS stops working after a refresh), combined with
auth_jwt_key_file keys; unknown kid -> 401 after one refetch, refetches rate-limited by
min_refresh (counted at the server); the JWKS server down at start -> 503 + Retry-After, then
200 once it is up; malformed / failing JWKS answers keep the previous keys; https with the
right CA, a wrong CA (503, the reason logged) and ssl_verify=off; a reload and a stop with a
fetch hanging; config errors at file:line.
"""
import json
import os
import time

import pytest

from control_plane import ControlPlane, make_ca, make_server_cert
from harness import free_port
from test_auth_jwt import Keys, bearer, ec_jwk, mint, request, upstream_headers
from upstreams import EchoUpstream, wait_until


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwkskeys")
    os.chmod(d, 0o755)
    k = Keys(str(d))
    for name in ("a", "b", "c"):
        k.gen("ec" + name, ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    return k


@pytest.fixture
def up():
    with EchoUpstream() as u:
        yield u


class Jwks:
    """What the JWKS server serves: a document (dict or raw text) or a status."""

    def __init__(self, keys, kids):
        self.keys = keys
        self.status = 200
        self.raw = None
        self.serve(kids)

    def serve(self, kids):
        self.raw = None
        self.status = 200
        self.doc = {"keys": [ec_jwk(self.keys.files["ec" + k][1], k) for k in kids]}

    def __call__(self, method, path, headers, body):
        if self.status != 200:
            return self.status, {}, "oops"
        text = self.raw if self.raw is not None else json.dumps(self.doc)
        return 200, {"Content-Type": "application/json"}, text


def token(keys, kid, claims=None):
    return mint(keys, "ES256", claims, header={"kid": kid}, key=keys.files["ec" + kid][0])


def make(factory, up, uri_args, key_conf="", workers=1):
    block = (
        "http {\n"
        "    server {\n        listen 127.0.0.1:{port};\n"
        f"        {key_conf}\n"
        f"        auth_jwt_jwks_uri {uri_args};\n"
        "        location / {\n"
        "            auth_jwt \"api\";\n"
        "            proxy_set_header X-User-Id $jwt_claim_sub;\n"
        f"            proxy_pass http://{up.addr};\n"
        "        }\n    }\n}\n"
    )
    t = factory(block, workers=workers)
    t.start()
    return t


def status_of(t, tok):
    return request(t, "/", bearer(tok))[0]


def test_rotation_without_reload(tollgate_factory, up, keys):
    doc = Jwks(keys, ["a"])
    with ControlPlane(doc) as srv:
        t = make(tollgate_factory, up, srv.url("/jwks") + " refresh=2s min_refresh=1s",
                 key_conf="auth_jwt_key_file %s;" % keys.files["rsa"][1])
        pids = t.worker_pids()
        assert wait_until(lambda: srv.count() >= 1, timeout=10)
        status, _, body = request(t, "/", bearer(token(keys, "a", {"sub": "ann"})))
        assert status == 200, body
        assert upstream_headers(body)["x-user-id"] == ["ann"]
        # The key file's key still works next to the fetched ones.
        assert status_of(t, mint(keys, "RS256")) == 200

        # A new kid appears at the IdP: the first request with it waits for an early fetch.
        doc.serve(["a", "b"])
        time.sleep(1.2)  # past min_refresh since the last fetch
        fetches = srv.count()
        assert status_of(t, token(keys, "b")) == 200
        assert srv.count() > fetches
        tok_a = token(keys, "a")
        assert status_of(t, tok_a) == 200  # (and cached)

        # The old key leaves the JWKS: after a refresh its tokens are refused, cache or not.
        doc.serve(["b"])
        assert wait_until(lambda: status_of(t, tok_a) == 401, timeout=10, interval=0.2)
        status, h, body = request(t, "/", bearer(tok_a))
        assert 'error="invalid_token"' in h["www-authenticate"]
        assert json.loads(body)["message"] == "no key for the token"
        assert status_of(t, token(keys, "b")) == 200
        assert t.worker_pids() == pids  # no reload, no respawn

        # A reload starts new workers that fetch for themselves; the old ones leave promptly.
        t.reload()
        t.wait_workers(1, exclude=pids)
        assert wait_until(lambda: set(t.worker_pids()).isdisjoint(pids), timeout=10)
        assert wait_until(lambda: status_of(t, token(keys, "b")) == 200, timeout=10)
        t.stop()
        assert "keys from \"%s\"" % srv.url("/jwks") in t.error_log()


def test_unknown_kid_refetch_is_rate_limited(tollgate_factory, up, keys):
    doc = Jwks(keys, ["a"])
    with ControlPlane(doc) as srv:
        t = make(tollgate_factory, up, srv.url("/jwks") + " min_refresh=2s")
        assert wait_until(lambda: srv.count() == 1, timeout=10)
        assert status_of(t, token(keys, "a")) == 200
        time.sleep(2.2)
        # kid c is nowhere: one early fetch, then 401.
        status, h, body = request(t, "/", bearer(token(keys, "c")))
        assert status == 401, body
        assert 'error_description="no key for the token"' in h["www-authenticate"]
        assert srv.count() == 2
        # More unknown kids right away: refused without asking the server again.
        for kid in ("c", "b", "c", "b", "c"):
            assert status_of(t, token(keys, kid)) == 401
        assert srv.count() == 2
        # Once min_refresh has passed, a new kid is fetched again and accepted.
        doc.serve(["a", "c"])
        time.sleep(2.2)
        assert status_of(t, token(keys, "c")) == 200
        assert srv.count() == 3


def test_server_down_at_start_then_up(tollgate_factory, up, keys):
    port = free_port()
    doc = Jwks(keys, ["a"])
    t = make(tollgate_factory, up,
             f"http://127.0.0.1:{port}/jwks min_refresh=1s timeout=2s")
    tok = token(keys, "a")
    status, h, body = request(t, "/", bearer(tok))
    assert status == 503, body
    assert h["content-type"] == "application/json"
    assert json.loads(body)["status"] == 503
    assert h["retry-after"] == "1"
    assert wait_until(lambda: "fetching JWKS from" in t.error_log(), timeout=10)
    # A token that needs no fetched key is not held up: no token at all is still a 401.
    assert request(t, "/")[0] == 401
    with ControlPlane(doc, port=port) as srv:
        assert wait_until(lambda: status_of(t, tok) == 200, timeout=15, interval=0.3)
        assert srv.count() >= 1
    t.stop()
    log = t.error_log()
    assert "connect failed" in log and "no keys yet" in log
    assert tok not in log


def test_malformed_jwks_is_kept_out(tollgate_factory, up, keys):
    doc = Jwks(keys, ["a"])
    with ControlPlane(doc) as srv:
        t = make(tollgate_factory, up, srv.url("/jwks") + " refresh=1s min_refresh=1s")
        tok = token(keys, "a")
        assert wait_until(lambda: status_of(t, tok) == 200, timeout=10)
        bad_docs = [
            "not json",
            '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "b", "x": "AA", "y": "AA"}]}',
            '{"keys": []}',
            '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "b", "use": "enc", "x": "AA"}]}',
        ]
        for raw in bad_docs + [None]:
            n = srv.count()
            if raw is None:
                doc.status = 500
            else:
                doc.raw = raw
            assert wait_until(lambda: srv.count() >= n + 2, timeout=10)
            assert status_of(t, tok) == 200  # the previous keys stay
            assert status_of(t, token(keys, "b")) == 401
        doc.serve(["b"])
        assert wait_until(lambda: status_of(t, token(keys, "b")) == 200, timeout=10)
        t.stop()
        log = t.error_log()
        assert "invalid JWKS" in log and "status 500" in log and "no signing keys" in log
        assert "keeping the previous keys" in log


def test_https_jwks_and_ca_verification(tollgate_factory, up, keys, tmp_path):
    d = str(tmp_path)
    ca = make_ca(d, "test-ca")
    other_ca = make_ca(d, "other-ca")
    cert = make_server_cert(d, ca)
    doc = Jwks(keys, ["a"])
    tok = token(keys, "a")
    with ControlPlane(doc, tls=cert) as srv:
        good = make(tollgate_factory, up,
                    srv.url("/jwks") + " ssl_trusted_certificate=" + ca[0])
        assert wait_until(lambda: status_of(good, tok) == 200, timeout=10)

        wrong = make(tollgate_factory, up,
                     srv.url("/jwks") + " min_refresh=1s ssl_trusted_certificate=" + other_ca[0])
        assert wait_until(lambda: "TLS handshake failed" in wrong.error_log(), timeout=10)
        status, h, body = request(wrong, "/", bearer(tok))
        assert status == 503, body

        off = make(tollgate_factory, up,
                   srv.url("/jwks") + " ssl_verify=off")
        assert wait_until(lambda: status_of(off, tok) == 200, timeout=10)
        # Checked by name too: a certificate for another host fails even with the right CA.
    with ControlPlane(doc, tls=make_server_cert(d, ca, "elsewhere", "DNS:elsewhere.test")) as s2:
        named = make(tollgate_factory, up,
                     s2.url("/jwks") + " min_refresh=1s ssl_trusted_certificate=" + ca[0])
        assert wait_until(lambda: "TLS handshake failed" in named.error_log(), timeout=10)
        assert status_of(named, tok) == 503


def test_reload_and_stop_with_a_hanging_fetch(tollgate_factory, up, keys):
    hang = {"on": False}
    doc = Jwks(keys, ["a"])

    def handler(*args):
        return ("hang", 4) if hang["on"] else doc(*args)

    with ControlPlane(handler) as srv:
        t = make(tollgate_factory, up, srv.url("/jwks") + " refresh=1s timeout=30s")
        assert wait_until(lambda: status_of(t, token(keys, "a")) == 200, timeout=10)
        hang["on"] = True
        n = srv.count()
        assert wait_until(lambda: srv.count() > n, timeout=10)  # a refresh now hangs
        pids = t.worker_pids()
        t.reload()
        t.wait_workers(1, exclude=pids)
        # The old worker does not wait for its hanging fetch (30 s timeout) to leave.
        assert wait_until(lambda: set(t.worker_pids()).isdisjoint(pids), timeout=3)
        t.stop()
        assert t.proc.returncode == 0


@pytest.mark.parametrize("args,error", [
    ("ftp://127.0.0.1/jwks", "the URL must start with http:// or https://"),
    ("http://127.0.0.1:99999/jwks", "invalid port"),
    ("http://127.0.0.1/jwks refresh=0s", 'invalid value "refresh=0s"'),
    ("http://127.0.0.1/jwks ssl_verify=on", "need an https URL"),
    ("https://127.0.0.1/jwks ssl_trusted_certificate=/nonexistent.pem",
     "cannot load trusted certificate"),
    ("http://no-such-host.invalid/jwks", "host not found"),
])
def test_config_errors(tollgate_factory, up, args, error):
    block = ("http {\n    server {\n        listen 127.0.0.1:{port};\n"
             f"        auth_jwt_jwks_uri {args};\n"
             "        location / { auth_jwt api; }\n    }\n}\n")
    t = tollgate_factory(block)
    code, err = t.test_config()
    assert code == 1
    assert "tollgate.conf:10:" in err and error in err, err
