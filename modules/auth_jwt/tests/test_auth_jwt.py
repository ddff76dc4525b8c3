"""auth_jwt against the real binary and a real upstream (tests/integration/upstreams.py).

Tokens are minted here with the real openssl CLI: keys from `openssl genpkey`, signatures from
`openssl dgst -sign` (RS/PS/ES; ES DER converted to JOSE r||s here), `openssl pkeyutl -rawin`
(EdDSA) and `openssl dgst -mac HMAC` (HS); python3's base64/json only assemble the pieces.

Covered: every algorithm with a good and a tampered token; alg none; HS-with-the-RSA-public-key
confusion; the algorithm allowlist; expired / nbf / iat with and without leeway; iss and aud
(string and array); auth_jwt_require -> 403 insufficient_scope; kid selection across a JWKS and
JWKS rotation by reload; malformed tokens (bad base64, bad JSON, two segments, 20 KiB and 64 KiB)
-> 401 JSON and the server lives; missing token challenge; token=$cookie_NAME; claim variables
(nested, arrays, headers) forwarded with proxy_set_header and spoofed copies never reaching the
upstream; a limit_req_zone keyed by $jwt_claim_sub (PreAccess, before the Access check); the
verification cache hit count; config errors at file:line; the token never in the logs.
"""
import base64
import http.client
import json
import os
import subprocess
import time

import pytest

from upstreams import EchoUpstream, wait_until

ALGS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "EdDSA"]
SECRET = b"a-test-secret-of-32-bytes-length"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
    r = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def der_to_jose(der, half):
    """An ECDSA DER SEQUENCE { INTEGER r, INTEGER s } as r||s, each `half` bytes."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\x00")
        out += v.rjust(half, b"\x00")
        i += 2 + n
    return out


class Keys:
    """Key pairs made with openssl genpkey in `d`."""

    def __init__(self, d):
        self.d = d
        self.files = {}
        for name, args in [
            ("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
            ("p256", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            ("p384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
            ("ed", ["-algorithm", "ED25519"]),
        ]:
            self.gen(name, args)
        self.secret = os.path.join(d, "hs.secret")
        with open(self.secret, "wb") as f:
            f.write(SECRET + b"\n")  # the trailing newline is not part of the secret

    def gen(self, name, args):
        priv = os.path.join(self.d, name + ".pem")
        pub = os.path.join(self.d, name + ".pub")
        openssl("genpkey", *args, "-out", priv)
        openssl("pkey", "-in", priv, "-pubout", "-out", pub)
        self.files[name] = (priv, pub)
        return priv, pub

    def key_for(self, alg):
        return {"RS": "rsa", "PS": "rsa", "ES256": "p256", "ES384": "p384", "EdDSA": "ed"}.get(
            alg if alg in ("ES256", "ES384", "EdDSA") else alg[:2])


def sign(keys, alg, data, key=None):
    bits = alg[2:] if alg != "EdDSA" else None
    if alg.startswith("HS"):
        secret = key if key is not None else SECRET
        return openssl("dgst", "-sha" + bits, "-mac", "HMAC", "-macopt", "hexkey:" + secret.hex(),
                       "-binary", data=data)
    priv = key or keys.files[keys.key_for(alg)][0]
    if alg == "EdDSA":
        path = os.path.join(keys.d, "input.bin")
        with open(path, "wb") as f:
            f.write(data)
        return openssl("pkeyutl", "-sign", "-inkey", priv, "-rawin", "-in", path)
    extra = []
    if alg.startswith("PS"):
        extra = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
    sig = openssl("dgst", "-sha" + bits, "-sign", priv, *extra, data=data)
    if alg.startswith("ES"):
        sig = der_to_jose(sig, 32 if alg == "ES256" else 48)
    return sig


def mint(keys, alg, claims=None, header=None, key=None, sig_alg=None):
    h = {"alg": alg, "typ": "JWT"}
    h.update(header or {})
    c = {"sub": "alice", "iat": int(time.time()) - 10, "exp": int(time.time()) + 3600}
    c.update(claims or {})
    for k in [k for k, v in c.items() if v is None]:
        del c[k]
    head = b64u(json.dumps(h).encode()) + "." + b64u(json.dumps(c).encode())
    return head + "." + b64u(sign(keys, sig_alg or alg, head.encode(), key))


def tamper(token):
    head, payload, sig = token.split(".")
    c = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    c["sub"] = "mallory"
    return head + "." + b64u(json.dumps(c).encode()) + "." + sig


def request(t, path="/", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def bearer(token):
    return {"Authorization": "Bearer " + token}


def upstream_headers(body):
    info = json.loads(body)
    out = {}
    for k, v in info["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwtkeys")
    os.chmod(d, 0o755)
    return Keys(str(d))


@pytest.fixture
def up():
    with EchoUpstream() as u:
        yield u


def all_keys(keys):
    return "\n".join(
        ["auth_jwt_key_file %s;" % keys.files[n][1] for n in ("rsa", "p256", "p384", "ed")]
        + ["auth_jwt_secret %s;" % keys.secret])


def make(factory, up, keys, loc="", server="", http_extra="", key_conf=None, workers=1):
    block = (
        "http {\n"
        "    access_log logs/access.log;\n"
        f"{http_extra}\n"
        "    server {\n        listen 127.0.0.1:{port};\n"
        f"{key_conf if key_conf is not None else all_keys(keys)}\n{server}\n"
        "        location / {\n"
        "            auth_jwt \"api\";\n"
        f"{loc}\n"
        "            proxy_set_header X-User-Id $jwt_claim_sub;\n"
        f"            proxy_pass http://{up.addr};\n"
        "        }\n    }\n}\n"
    )
    t = factory(block, workers=workers)
    t.start()
    return t


def assert_401(status, h, body, description=None):
    assert status == 401, body
    assert h["content-type"] == "application/json"
    j = json.loads(body)
    assert j["status"] == 401
    challenge = h["www-authenticate"]
    assert challenge.startswith('Bearer realm="api"')
    if description is not None:
        assert 'error="invalid_token"' in challenge
        assert f'error_description="{description}"' in challenge, challenge


def logs(t):
    text = t.error_log()
    try:
        with open(t.path("logs", "access.log")) as f:
            text += f.read()
    except FileNotFoundError:
        pass
    return text


# ---- algorithms -----------------------------------------------------------------------------


def test_every_algorithm_good_and_tampered(tollgate_factory, up, keys):
    t = make(tollgate_factory, up, keys)
    tokens = []
    for alg in ALGS:
        tok = mint(keys, alg, {"sub": "user-" + alg})
        tokens.append(tok)
        status, _, body = request(t, "/a", bearer(tok))
        assert status == 200, (alg, body)
        assert upstream_headers(body)["x-user-id"] == ["user-" + alg]
        bad = tamper(tok)
        tokens.append(bad)
        assert_401(*request(t, "/a", bearer(bad)), "invalid signature")
        # A signature of the right size for another message.
        other = mint(keys, alg, {"sub": "x"})
        forged = tok.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
        assert_401(*request(t, "/a", bearer(forged)), "invalid signature")
    t.stop()
    text = logs(t)
    assert "invalid signature" in text
    for tok in tokens:
        assert tok not in text
        assert tok.split(".")[2] not in text


def test_alg_none_and_hs_rs_confusion(tollgate_factory, up, keys):
    rsa_pub = keys.files["rsa"][1]
    t = make(tollgate_factory, up, keys, key_conf="auth_jwt_key_file %s;" % rsa_pub)
    assert request(t, "/", bearer(mint(keys, "RS256")))[0] == 200
    head = b64u(b'{"alg":"none","typ":"JWT"}') + "." + b64u(b'{"sub":"admin"}')
    assert_401(*request(t, "/", bearer(head + ".")), "unsupported or missing algorithm")
    head2 = b64u(b'{"alg":"None"}') + "." + b64u(b'{"sub":"admin"}')
    assert_401(*request(t, "/", bearer(head2 + ".")), "unsupported or missing algorithm")
    # HS256 keyed with the RSA public key's PEM bytes (and its DER), as an attacker would.
    with open(rsa_pub, "rb") as f:
        pem = f.read()
    der = openssl("pkey", "-pubin", "-in", rsa_pub, "-outform", "DER")
    for secret in (pem, pem.strip(), der):
        forged = mint(keys, "HS256", {"sub": "admin"}, key=secret)
        assert_401(*request(t, "/", bearer(forged)), "no key for the token")


def test_algorithm_allowlist(tollgate_factory, up, keys):
    t = make(tollgate_factory, up, keys, loc="auth_jwt_algorithms ES256 EdDSA;")
    assert request(t, "/", bearer(mint(keys, "ES256")))[0] == 200
    assert request(t, "/", bearer(mint(keys, "EdDSA")))[0] == 200
    for alg in ("RS256", "HS256", "ES384", "PS256"):
        assert_401(*request(t, "/", bearer(mint(keys, alg))), "algorithm not allowed")


# ---- claims ---------------------------------------------------------------------------------


def test_times_and_leeway(tollgate_factory, up, keys):
    server = """
        location /lee {
            auth_jwt "api";
            auth_jwt_leeway 2m;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, keys, server=server)
    now = int(time.time())
    expired = mint(keys, "HS256", {"exp": now - 30})
    early = mint(keys, "HS256", {"nbf": now + 30})
    future = mint(keys, "HS256", {"iat": now + 30})
    assert_401(*request(t, "/", bearer(expired)), "token expired")
    assert_401(*request(t, "/", bearer(early)), "token not yet valid")
    assert_401(*request(t, "/", bearer(future)), "token issued in the future")
    for tok in (expired, early, future):
        assert request(t, "/lee", bearer(tok))[0] == 200
    way_expired = mint(keys, "HS256", {"exp": now - 600})
    assert_401(*request(t, "/lee", bearer(way_expired)), "token expired")
    assert_401(*request(t, "/", bearer(mint(keys, "HS256", {"exp": "tomorrow"}))),
               "invalid exp, nbf or iat claim")
    # No exp at all is accepted (require it with auth_jwt_require exp).
    assert request(t, "/", bearer(mint(keys, "HS256", {"exp": None})))[0] == 200


def test_issuer_and_audience(tollgate_factory, up, keys):
    loc = 'auth_jwt_issuer "https://idp.test"; auth_jwt_audience api.test other;'
    t = make(tollgate_factory, up, keys, loc=loc)
    ok = {"iss": "https://idp.test", "aud": "api.test"}
    assert request(t, "/", bearer(mint(keys, "ES256", ok)))[0] == 200
    assert request(t, "/", bearer(mint(keys, "ES256", dict(ok, aud=["x", "other"]))))[0] == 200
    assert_401(*request(t, "/", bearer(mint(keys, "ES256", dict(ok, iss="https://evil")))),
               "invalid issuer")
    assert_401(*request(t, "/", bearer(mint(keys, "ES256", dict(ok, aud="x")))),
               "invalid audience")
    assert_401(*request(t, "/", bearer(mint(keys, "ES256", dict(ok, aud=["x", "y"])))),
               "invalid audience")
    assert_401(*request(t, "/", bearer(mint(keys, "ES256", {"iss": "https://idp.test"}))),
               "invalid audience")


def test_required_claims_are_403(tollgate_factory, up, keys):
    server = """
        location /write {
            auth_jwt "api";
            auth_jwt_require scope agents:write;
            auth_jwt_require org.team core;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, keys, server=server)
    good = {"scope": "agents:read agents:write", "org": {"team": "core"}}
    assert request(t, "/write", bearer(mint(keys, "RS256", good)))[0] == 200
    as_array = {"scope": ["agents:write"], "org": {"team": "core"}}
    assert request(t, "/write", bearer(mint(keys, "RS256", as_array)))[0] == 200
    for claims, why in [
        ({"scope": "agents:read", "org": {"team": "core"}}, "required claim value missing"),
        ({"scope": "agents:writer", "org": {"team": "core"}}, "required claim value missing"),
        ({"scope": "agents:write"}, "required claim missing"),
    ]:
        status, h, body = request(t, "/write", bearer(mint(keys, "RS256", claims)))
        assert status == 403, body
        assert json.loads(body)["status"] == 403
        assert 'error="insufficient_scope"' in h["www-authenticate"]
        assert f'error_description="{why}"' in h["www-authenticate"]
    # The same token passes where nothing is required.
    assert request(t, "/", bearer(mint(keys, "RS256", {"scope": "agents:read"})))[0] == 200


# ---- keys -----------------------------------------------------------------------------------


def ec_jwk(pub, kid, crv="P-256"):
    der = openssl("pkey", "-pubin", "-in", pub, "-outform", "DER")
    n = 32 if crv == "P-256" else 48
    point = der[-(2 * n + 1):]
    assert point[0] == 4
    return {"kty": "EC", "crv": crv, "kid": kid, "x": b64u(point[1:n + 1]),
            "y": b64u(point[n + 1:])}


def rsa_jwk(pub, kid):
    out = openssl("rsa", "-pubin", "-in", pub, "-noout", "-modulus").decode()
    n = bytes.fromhex(out.strip().split("=", 1)[1])
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "n": b64u(n), "e": b64u(b"\x01\x00\x01")}


def ed_jwk(pub, kid):
    der = openssl("pkey", "-pubin", "-in", pub, "-outform", "DER")
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(der[-32:])}


def test_jwks_kid_selection_and_rotation_by_reload(tollgate_factory, up, keys, tmp_path):
    a_priv, a_pub = keys.files["p256"]
    b_priv, b_pub = keys.gen("p256b", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    c_priv, c_pub = keys.gen("p256c", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    jwks = os.path.join(keys.d, "jwks.json")
    with open(jwks, "w") as f:
        json.dump({"keys": [ec_jwk(a_pub, "a"), ec_jwk(b_pub, "b"),
                            rsa_jwk(keys.files["rsa"][1], "r"),
                            ed_jwk(keys.files["ed"][1], "e"),
                            {"kty": "oct", "kid": "h", "k": b64u(SECRET)}]}, f)
    t = make(tollgate_factory, up, keys, key_conf="auth_jwt_key_file %s;" % jwks)
    assert request(t, "/", bearer(mint(keys, "ES256", header={"kid": "a"}, key=a_priv)))[0] == 200
    assert request(t, "/", bearer(mint(keys, "ES256", header={"kid": "b"}, key=b_priv)))[0] == 200
    assert request(t, "/", bearer(mint(keys, "RS256", header={"kid": "r"})))[0] == 200
    assert request(t, "/", bearer(mint(keys, "EdDSA", header={"kid": "e"})))[0] == 200
    assert request(t, "/", bearer(mint(keys, "HS256", header={"kid": "h"})))[0] == 200
    # kid a, signed with b's key; an unknown kid; RS384 against the RS256-only JWK.
    assert_401(*request(t, "/", bearer(mint(keys, "ES256", header={"kid": "a"}, key=b_priv))),
               "invalid signature")
    assert_401(*request(t, "/", bearer(mint(keys, "ES256", header={"kid": "zz"}, key=a_priv))),
               "no key for the token")
    assert_401(*request(t, "/", bearer(mint(keys, "RS384", header={"kid": "r"}))),
               "no key for the token")

    # Rotation: c replaces a; after HUP c's tokens pass and a's fail.
    with open(jwks, "w") as f:
        json.dump({"keys": [ec_jwk(b_pub, "b"), ec_jwk(c_pub, "c")]}, f)
    old = t.worker_pids()
    t.reload()
    t.wait_workers(1, exclude=old)
    tok_c = mint(keys, "ES256", header={"kid": "c"}, key=c_priv)
    assert wait_until(lambda: request(t, "/", bearer(tok_c))[0] == 200, timeout=10)
    assert_401(*request(t, "/", bearer(mint(keys, "ES256", header={"kid": "a"}, key=a_priv))),
               "no key for the token")

    # A broken JWKS fails the reload, and the running keys stay.
    with open(jwks, "w") as f:
        f.write('{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}')
    old = t.worker_pids()
    t.reload()
    assert wait_until(lambda: "JWKS" in t.error_log(), timeout=10)
    assert t.worker_pids() == old
    assert request(t, "/", bearer(tok_c))[0] == 200


# ---- malformed tokens -----------------------------------------------------------------------


def test_malformed_tokens_are_401_json(tollgate_factory, up, keys):
    # Header buffers large enough that the token limit (16 KiB) is what refuses 20 KiB.
    t = make(tollgate_factory, up, keys, server="large_client_header_buffers 4 32k;")
    good = mint(keys, "HS256")
    h, p, s = good.split(".")
    for bad in [
        "abc", h + "." + p, good + ".x", h + "." + p + "." + s + "=", "!!!." + p + "." + s,
        b64u(b"{not json") + "." + p + "." + s, h + "." + b64u(b"[1,2]") + "." + s,
        h + ".." + s, "..", h + "." + p + ".%%%", good[:-1],
        b64u(b'{"alg":"HS256","kid":5}') + "." + p + "." + s,
        b64u(b'{"alg":"HS256","crit":["x"]}') + "." + p + "." + s,
    ]:
        status, hd, body = request(t, "/", bearer(bad))
        assert status == 401, bad
        assert json.loads(body)["status"] == 401
        assert 'error="invalid_token"' in hd["www-authenticate"]
    assert_401(*request(t, "/", bearer("a" * 20000 + "." + p + "." + s)), "token too large")
    # 64 KiB: rejected by the token limit or by the header limit, never accepted.
    status, _, _ = request(t, "/", bearer(h + "." + b64u(b"x" * 49000) + "." + s))
    assert status in (400, 401, 431, 494)
    assert request(t, "/", bearer(good))[0] == 200  # still serving


def test_missing_token_challenge(tollgate_factory, up, keys):
    t = make(tollgate_factory, up, keys)
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        status, h, body = request(t, "/", headers)
        assert status == 401
        assert h["www-authenticate"] == 'Bearer realm="api"'
        assert json.loads(body)["status"] == 401


# ---- variables and forwarding ---------------------------------------------------------------


def test_claim_variables_and_spoofed_headers(tollgate_factory, up, keys):
    loc = """
            proxy_set_header X-Team ${jwt_claim_org.team};
            proxy_set_header X-Roles $jwt_claim_roles;
            proxy_set_header X-Org $jwt_claim_org;
            proxy_set_header X-Kid $jwt_header_kid;
            proxy_set_header X-Jwt-Status $jwt_status;
    """
    t = make(tollgate_factory, up, keys, loc=loc)
    claims = {"sub": "alice", "org": {"team": "core"}, "roles": ["admin", "dev"]}
    tok = mint(keys, "ES384", claims, header={"kid": "k1"})
    spoof = {"X-User-Id": "root", "X-Team": "evil", "X-Roles": "god", "X-Kid": "x",
             "X-Org": "x", "X-Jwt-Status": "ok"}
    status, _, body = request(t, "/", dict(bearer(tok), **spoof))
    assert status == 200
    h = upstream_headers(body)
    assert h["x-user-id"] == ["alice"]
    assert h["x-team"] == ["core"]
    assert h["x-roles"] == ["admin,dev"]
    assert json.loads(h["x-org"][0]) == {"team": "core"}
    assert h["x-kid"] == ["k1"]
    assert h["x-jwt-status"] == ["ok"]
    # Claims missing from the token: the header is absent, the client's copy too.
    status, _, body = request(t, "/", dict(bearer(mint(keys, "ES384", {"sub": None})), **spoof))
    assert status == 200
    h = upstream_headers(body)
    for name in ("x-user-id", "x-team", "x-roles", "x-kid", "x-org"):
        assert name not in h, name


def test_token_from_cookie_and_auth_off(tollgate_factory, up, keys):
    server = """
        location /c {
            auth_jwt "api" token=$cookie_session;
            proxy_set_header X-User-Id $jwt_claim_sub;
            proxy_pass http://%s;
        }
        location /open {
            auth_jwt off;
            proxy_set_header X-User-Id $jwt_claim_sub;
            proxy_pass http://%s;
        }
    """ % (up.addr, up.addr)
    t = make(tollgate_factory, up, keys, server=server)
    tok = mint(keys, "PS256", {"sub": "carol"})
    status, _, body = request(t, "/c", {"Cookie": "a=b; session=" + tok})
    assert status == 200
    assert upstream_headers(body)["x-user-id"] == ["carol"]
    assert request(t, "/c", bearer(tok))[0] == 401  # only the cookie counts here
    status, _, body = request(t, "/open", dict(bearer(tok), **{"X-User-Id": "root"}))
    assert status == 200
    assert "x-user-id" not in upstream_headers(body)


def test_limit_req_keyed_by_claim(tollgate_factory, up, keys):
    http_extra = "limit_req_zone $jwt_claim_sub zone=per_sub:64k rate=1r/m;"
    t = make(tollgate_factory, up, keys, loc="limit_req zone=per_sub;", http_extra=http_extra)
    alice = mint(keys, "HS256", {"sub": "alice"})
    bob = mint(keys, "HS256", {"sub": "bob"})
    assert request(t, "/", bearer(alice))[0] == 200
    assert request(t, "/", bearer(alice))[0] == 429
    assert request(t, "/", bearer(bob))[0] == 200


def test_cache_hits_counted(tollgate_factory, up, keys):
    t = make(tollgate_factory, up, keys, http_extra="auth_jwt_cache max=16 valid=1m;")
    tok = mint(keys, "RS256")
    for _ in range(5):
        assert request(t, "/", bearer(tok))[0] == 200
    # A cached token is still re-checked against this location's claims and times.
    t.stop()
    assert "5 accepted, 0 missing, 0 invalid, 0 forbidden, 4 cache hits" in t.error_log()


def test_cache_off(tollgate_factory, up, keys):
    t = make(tollgate_factory, up, keys, http_extra="auth_jwt_cache off;")
    tok = mint(keys, "ES256")
    for _ in range(3):
        assert request(t, "/", bearer(tok))[0] == 200
    t.stop()
    assert "3 accepted, 0 missing, 0 invalid, 0 forbidden, 0 cache hits" in t.error_log()


# ---- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "conf, message",
    [
        ("auth_jwt_key_file {bad};", "key file"),
        ("auth_jwt_key_file {jwks};", "JWKS"),
        ("auth_jwt_key_file /nonexistent/key.pem;", "open()"),
        ("auth_jwt_secret {empty};", "empty HMAC secret"),
        ("auth_jwt_secret {secret}; auth_jwt_algorithms HS256 none;", "unsupported algorithm"),
        ("auth_jwt_secret {secret}; auth_jwt_leeway soon;", "auth_jwt_leeway"),
        ("auth_jwt_secret {secret}; auth_jwt_require $x;", "not a variable"),
        ("", "requires \"auth_jwt_key_file\""),
    ],
)
def test_config_errors(tollgate_factory, up, keys, tmp_path, conf, message):
    os.chmod(tmp_path, 0o755)
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}')
    empty = tmp_path / "empty"
    empty.write_text("\n")
    conf = conf.format(bad=bad, jwks=jwks, empty=empty, secret=keys.secret)
    block = ("http {\n    server {\n        listen 127.0.0.1:{port};\n"
             "        location / {\n            auth_jwt \"api\";\n"
             f"            {conf}\n"
             f"            proxy_pass http://{up.addr};\n        }}\n    }}\n}}\n")
    t = tollgate_factory(block)
    code, err = t.test_config()
    assert code != 0
    assert message in err, err
    assert "tollgate.conf:" in err, err


def test_internal_redirect_is_checked_again(tollgate_factory, up, keys):
    server = """
        location /r {
            auth_jwt "api";
            error_page 404 = /p;
            return 404;
        }
        location /p {
            auth_jwt "api";
            auth_jwt_require role admin;
            proxy_set_header X-User-Id $jwt_claim_sub;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, keys, server=server)
    user = mint(keys, "HS256", {"sub": "u", "role": "user"})
    admin = mint(keys, "HS256", {"sub": "a", "role": "admin"})
    assert request(t, "/r", bearer(user))[0] == 403  # /r accepted it; /p's requirement did not
    status, _, body = request(t, "/r", bearer(admin))
    assert status == 200
    assert upstream_headers(body)["x-user-id"] == ["a"]


# ---- auth_jwt_claim_header ----------------------------------------------------------------------


def test_claim_headers_forwarded_and_spoofed_copies_stripped_everywhere(tollgate_factory, up, keys):
    block = (
        "http {\n"
        "    auth_jwt_claim_header X-User-Id sub;\n"
        "    server {\n        listen 127.0.0.1:{port};\n"
        f"{all_keys(keys)}\n"
        "        location / {\n"
        "            auth_jwt \"api\";\n"
        "            auth_jwt_claim_header X-User-Id sub;\n"
        "            auth_jwt_claim_header X-Team org.team;\n"
        "            auth_jwt_claim_header X-Scopes scope;\n"
        f"            proxy_pass http://{up.addr};\n"
        "        }\n"
        "        location /inherits/ {\n"
        "            auth_jwt \"api\";\n"
        f"            proxy_pass http://{up.addr};\n"
        "        }\n"
        "        location /open/ {\n"
        f"            proxy_pass http://{up.addr};\n"
        "        }\n"
        "    }\n}\n")
    t = tollgate_factory(block)
    t.start()
    spoof = {"X-User-Id": "root", "x-team": "admins", "X-SCOPES": "everything"}
    tok = mint(keys, "RS256", {"sub": "alice", "org": {"team": "core"}, "scope": ["a", "b"]})

    status, _, body = request(t, "/x", {**bearer(tok), **spoof})
    assert status == 200, body
    h = upstream_headers(body)
    assert h["x-user-id"] == ["alice"]
    assert h["x-team"] == ["core"]
    assert h["x-scopes"] == ["a,b"]  # an array claim joined as $jwt_claim_ joins it

    # A claim the token lacks: no header at all, and never the client's copy.
    status, _, body = request(t, "/x", {**bearer(mint(keys, "ES256", {"sub": "bob"})), **spoof})
    assert status == 200, body
    h = upstream_headers(body)
    assert h["x-user-id"] == ["bob"]
    assert "x-team" not in h and "x-scopes" not in h

    # The http level's list is inherited by a location without its own.
    status, _, body = request(t, "/inherits/x", {**bearer(tok), **spoof})
    h = upstream_headers(body)
    assert status == 200 and h["x-user-id"] == ["alice"]
    assert "x-team" not in h and "x-scopes" not in h

    # A location that checks no token still strips every name used in the block.
    status, _, body = request(t, "/open/x", spoof)
    assert status == 200, body
    h = upstream_headers(body)
    assert "x-user-id" not in h and "x-team" not in h and "x-scopes" not in h

    # A rejected token: 401, and nothing reaches the upstream.
    before = len(up.log)
    status, _, _ = request(t, "/x", {**bearer(tamper(tok)), **spoof})
    assert status == 401
    assert len(up.log) == before


def test_claim_header_with_a_control_character_is_not_sent(tollgate_factory, up, keys):
    block = (
        "http {\n"
        "    server {\n        listen 127.0.0.1:{port};\n"
        f"{all_keys(keys)}\n"
        "        location / {\n"
        "            auth_jwt \"api\";\n"
        "            auth_jwt_claim_header X-Note note;\n"
        f"            proxy_pass http://{up.addr};\n"
        "        }\n    }\n}\n")
    t = tollgate_factory(block)
    t.start()
    status, _, body = request(t, "/", bearer(mint(keys, "HS256", {"note": "a\r\nX-Evil: 1"})))
    assert status == 200, body
    h = upstream_headers(body)
    assert "x-note" not in h and "x-evil" not in h


@pytest.mark.parametrize("directive,message", [
    ("auth_jwt_claim_header X-A;", 'invalid number of arguments in "auth_jwt_claim_header"'),
    ("auth_jwt_claim_header X-A $jwt_claim_sub;", "not a variable"),
    ("auth_jwt_claim_header \"X A\" sub;", "not a header name"),
    ("auth_jwt_claim_header X-A sub; auth_jwt_claim_header x-a team;", 'header "x-a" is duplicate'),
    ("auth_jwt_claim_header off; auth_jwt_claim_header X-A sub;",
     '"auth_jwt_claim_header off" is set'),
])
def test_claim_header_config_errors(tollgate_factory, up, keys, directive, message):
    block = (
        "http {\n    server {\n        listen 127.0.0.1:{port};\n"
        f"        location / {{\n            {directive}\n"
        f"            proxy_pass http://{up.addr};\n        }}\n    }}\n}}\n")
    t = tollgate_factory(block)
    code, err = t.test_config()
    assert code != 0
    assert message in err, err
    line = t.render(block).splitlines().index("            " + directive) + 1
    assert f"tollgate.conf:{line}:" in err, err
