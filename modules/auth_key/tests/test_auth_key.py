"""auth_key against the real binary and a real upstream (tests/integration/upstreams.py).

Covered: a key from X-API-Key, from a custom header, from Authorization: Bearer and from a query
argument; missing, unknown and revoked keys (401, JSON, WWW-Authenticate); `optional`;
spoofed identity headers never reach the upstream (with and without a key, with auth off);
the credential is hidden from the upstream; identity headers from auth_key_forward_header with
attribute variables; HUP reload picks up an added and a revoked key; a broken store fails -t and
a reload at STOREFILE:LINE; config errors at file:line; `tollgate key add/list/revoke`; keys never
appear in the error or access log; a limit_req_zone keyed by $consumer_id limits per consumer;
internal redirects (error_page) into and out of protected locations; every key source hidden;
concurrent `tollgate key add`; the LMDB store (lmdb:FILE) end to end.
"""
import hashlib
import http.client
import json
import os
import signal
import subprocess
import time

import pytest

from harness import BINARY, Tollgate
from upstreams import EchoUpstream, wait_until


def key_cmd(*args):
    return subprocess.run([BINARY, "key", *args], capture_output=True, text=True, timeout=30)


def add_key(store, consumer, tier=None, *attrs):
    args = ["add", "--store", store, "--consumer", consumer]
    if tier:
        args += ["--tier", tier]
    r = key_cmd(*args, *attrs)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("tg_") and len(key) == 46, key
    return key


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


def request(t, path="/", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def upstream_headers(body):
    """The headers the echo upstream received, as a dict of lowercase name -> list of values."""
    info = json.loads(body)
    out = {}
    for k, v in info["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out, info


def make(factory, up, store, body=None, http_extra="", workers=1, start=True):
    body = body or """
        location / {
            auth_key on;
            proxy_pass http://%s;
        }
    """ % up.addr
    block = (
        "http {\n"
        "    log_format keys '$request_uri $consumer_id $auth_key_status $auth_key_hash $http_x_api_key';\n"
        "    access_log logs/access.log keys;\n"
        f"    auth_key_store {store};\n"
        f"{http_extra}\n"
        "    server {\n        listen 127.0.0.1:{port};\n" + body + "\n    }\n}\n"
    )
    t = factory(block, workers=workers)
    if start:
        t.start()
    return t


@pytest.fixture
def up():
    with EchoUpstream() as u:
        yield u


@pytest.fixture
def store(tmp_path):
    os.chmod(tmp_path, 0o755)
    return str(tmp_path / "keys.txt")


def reload_and_wait(t, pred, timeout=10.0):
    old = t.worker_pids()
    t.reload()
    t.wait_workers(len(old), exclude=old)
    assert wait_until(pred, timeout=timeout)


# ---- authentication -----------------------------------------------------------------------------


def test_valid_key_from_header_forwards_identity(tollgate_factory, up, store):
    key = add_key(store, "alice", "gold", "team=infra")
    t = make(tollgate_factory, up, store)
    status, _, body = request(t, "/x", {"X-API-Key": key})
    assert status == 200
    h, _ = upstream_headers(body)
    assert h["x-consumer-id"] == ["alice"]
    assert h["x-consumer-tier"] == ["gold"]
    assert "x-api-key" not in h  # hidden from the upstream by default


def test_bearer_and_query_sources(tollgate_factory, up, store):
    key = add_key(store, "bob")
    body = """
        auth_key_source bearer query:api_key header:X-Custom-Key;
        location / {
            auth_key on;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, _, b = request(t, "/a", {"Authorization": "Bearer " + key})
    assert status == 200
    h, _ = upstream_headers(b)
    assert h["x-consumer-id"] == ["bob"] and h["x-consumer-tier"] == ["default"]
    assert "authorization" not in h

    status, _, b = request(t, "/q?x=1&api_key=" + key + "&y=2")
    assert status == 200
    h, info = upstream_headers(b)
    assert h["x-consumer-id"] == ["bob"]
    assert info["target"] == "/q?x=1&y=2"  # the key argument is removed

    status, _, b = request(t, "/q?api_key=" + key)
    assert status == 200
    assert upstream_headers(b)[1]["target"] == "/q"

    status, _, b = request(t, "/c", {"X-Custom-Key": key})
    assert status == 200
    assert "x-custom-key" not in upstream_headers(b)[0]

    # X-API-Key is not a source here.
    status, _, _ = request(t, "/c", {"X-API-Key": key})
    assert status == 401


def test_hide_credentials_off(tollgate_factory, up, store):
    key = add_key(store, "carol")
    body = """
        auth_key_hide_credentials off;
        location / {
            auth_key on;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, _, b = request(t, "/", {"X-API-Key": key})
    assert status == 200
    assert upstream_headers(b)[0]["x-api-key"] == [key]


@pytest.mark.parametrize(
    "headers, description",
    [
        ({}, None),
        ({"X-API-Key": "tg_not-a-real-key"}, "invalid API key"),
        ({"X-API-Key": ""}, None),
    ],
)
def test_missing_and_unknown_are_401_json(tollgate_factory, up, store, headers, description):
    add_key(store, "alice")
    t = make(tollgate_factory, up, store)
    status, h, body = request(t, "/x", headers)
    assert status == 401
    assert h["content-type"] == "application/json"
    j = json.loads(body)
    assert j["status"] == 401 and j["error"] == "unauthorized" and j["request_id"]
    www = h["www-authenticate"]
    assert www.startswith("ApiKey realm=\"tollgate\"")
    if description:
        assert j["message"] == description
        assert f'error="invalid_token", error_description="{description}"' in www
    else:
        assert j["message"] == "API key required"
        assert "error=" not in www  # RFC 6750 3.1: no error code without credentials
    assert up.requests == 0


def test_bearer_challenge(tollgate_factory, up, store):
    add_key(store, "alice")
    body = """
        location / {
            auth_key on;
            auth_key_source bearer;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, h, _ = request(t, "/", {"Authorization": "Bearer nope"})
    assert status == 401
    assert h["www-authenticate"] == (
        'Bearer realm="tollgate", error="invalid_token", error_description="invalid API key"'
    )


def test_revoked_key(tollgate_factory, up, store):
    key = add_key(store, "alice")
    r = key_cmd("revoke", "--store", store, key)
    assert r.returncode == 0, r.stderr
    t = make(tollgate_factory, up, store)
    status, h, body = request(t, "/", {"X-API-Key": key})
    assert status == 401
    assert json.loads(body)["message"] == "API key revoked"
    assert 'error_description="API key revoked"' in h["www-authenticate"]
    t.stop()
    log = t.error_log()
    assert "auth_key: revoked API key (sha256 " + sha(key)[:12] in log
    assert "of consumer alice" in log


def test_optional_mode(tollgate_factory, up, store):
    key = add_key(store, "alice")
    body = """
        location / {
            auth_key optional;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, _, b = request(t, "/", {"X-Consumer-Id": "admin"})
    assert status == 200
    assert "x-consumer-id" not in upstream_headers(b)[0]  # anonymous, and the spoof is gone
    status, _, b = request(t, "/", {"X-API-Key": key})
    assert status == 200 and upstream_headers(b)[0]["x-consumer-id"] == ["alice"]
    status, _, _ = request(t, "/", {"X-API-Key": "wrong"})
    assert status == 401  # a key that is present must be valid


# ---- identity headers -----------------------------------------------------------------------------


def test_spoofed_identity_headers_never_reach_upstream(tollgate_factory, up, store):
    key = add_key(store, "alice", "gold", "team=infra")
    body = """
        auth_key_forward_header X-User-Id $consumer_id;
        auth_key_forward_header X-Team $consumer_team;
        auth_key_forward_header X-Tier "tier-$consumer_tier";
        location / {
            auth_key on;
            proxy_pass http://%s;
        }
        location /open/ {
            auth_key off;
            proxy_pass http://%s;
        }
    """ % (up.addr, up.addr)
    t = make(tollgate_factory, up, store, body)
    spoof = [("X-User-Id", "root"), ("x-team", "admins"), ("X-TIER", "platinum"), ("X-User-Id", "root2")]
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    c.putrequest("GET", "/x")
    c.putheader("X-API-Key", key)
    for k, v in spoof:
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    b = r.read()
    c.close()
    assert r.status == 200
    h, _ = upstream_headers(b)
    assert h["x-user-id"] == ["alice"]
    assert h["x-team"] == ["infra"]
    assert h["x-tier"] == ["tier-gold"]
    assert "x-consumer-id" not in h  # the defaults are replaced by the configured headers

    # Without auth in the location the spoofed copies are still stripped.
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    c.putrequest("GET", "/open/y")
    for k, v in spoof:
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    b = r.read()
    c.close()
    assert r.status == 200
    h, _ = upstream_headers(b)
    assert "x-user-id" not in h and "x-team" not in h and "x-tier" not in h


def test_default_identity_headers_stripped_on_401_path_and_open(tollgate_factory, up, store):
    add_key(store, "alice")
    body = """
        location / {
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, _, b = request(t, "/", {"X-Consumer-Id": "admin", "X-Consumer-Tier": "gold"})
    assert status == 200
    h, _ = upstream_headers(b)
    assert "x-consumer-id" not in h and "x-consumer-tier" not in h


# ---- reload and the store ---------------------------------------------------------------------------


def test_reload_picks_up_added_and_revoked_keys(tollgate_factory, up, store):
    old_key = add_key(store, "alice")
    t = make(tollgate_factory, up, store, workers=2)
    new_key = add_key(store, "bob")
    assert request(t, "/", {"X-API-Key": new_key})[0] == 401  # not loaded yet
    assert key_cmd("revoke", "--store", store, sha(old_key)[:10]).returncode == 0
    assert request(t, "/", {"X-API-Key": old_key})[0] == 200  # still the old store
    reload_and_wait(t, lambda: request(t, "/", {"X-API-Key": new_key})[0] == 200)
    for _ in range(10):  # every worker of the new generation
        assert request(t, "/", {"X-API-Key": new_key})[0] == 200
        assert request(t, "/", {"X-API-Key": old_key})[0] == 401


def test_broken_store_fails_test_and_reload(tollgate_factory, up, store):
    key = add_key(store, "alice")
    t = make(tollgate_factory, up, store)
    with open(store, "a") as f:
        f.write("# a comment\nnot-a-hash alice gold\n")
    rc, err = t.test_config()
    assert rc == 1
    assert f"{store}:3: invalid SHA-256 \"not-a-hash\"" in err
    assert "tollgate.conf:" in err  # names the auth_key_store directive too
    old = t.worker_pids()
    t.reload()
    assert wait_until(lambda: f"{store}:3:" in t.error_log())
    assert t.worker_pids() == old  # the old generation keeps serving
    assert request(t, "/", {"X-API-Key": key})[0] == 200


@pytest.mark.parametrize(
    "snippet, expect",
    [
        ("auth_key maybe;", 'invalid value "maybe" in "auth_key" directive'),
        ("auth_key_source cookie:x;", 'invalid value "cookie:x" in "auth_key_source" directive'),
        ("auth_key_forward_header X-A;", 'invalid number of arguments in "auth_key_forward_header"'),
        ("auth_key on; auth_key off;", '"auth_key" directive is duplicate'),
        ("auth_key_forward_header X-A $nope;", 'unknown "nope" variable'),
    ],
)
def test_config_errors_at_file_line(tollgate_factory, up, store, snippet, expect):
    add_key(store, "alice")
    body = "\n        location / {\n            %s\n            proxy_pass http://%s;\n        }\n" % (snippet, up.addr)
    t = make(tollgate_factory, up, store, body, start=False)
    rc, err = t.test_config()
    assert rc == 1
    assert f"{t.conf_path}:" in err and expect in err, err


def test_auth_key_without_store_is_an_error(tollgate_factory, up):
    block = "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / {\n            auth_key on;\n        }\n    }\n}\n"
    t = tollgate_factory(block)
    rc, err = t.test_config()
    assert rc == 1
    assert f"{t.conf_path}:" in err and '"auth_key" requires "auth_key_store"' in err


def test_missing_store_file(tollgate_factory, up, tmp_path):
    t = make(tollgate_factory, up, str(tmp_path / "nope.txt"), start=False)
    rc, err = t.test_config()
    assert rc == 1 and f"{t.conf_path}:" in err and "nope.txt" in err


def test_key_command_round_trip(tmp_path):
    store = str(tmp_path / "k.txt")
    with open(store, "w") as f:
        f.write("# team keys\n")
    a = add_key(store, "alice", "gold", "team=infra", "project=x")
    b = add_key(store, "bob")
    assert a != b
    text = open(store).read()
    assert text.startswith("# team keys\n")  # comments kept
    assert a not in text and b not in text  # only hashes are stored
    assert sha(a) in text and sha(b) in text
    r = key_cmd("list", "--store", store)
    assert r.returncode == 0
    assert a not in r.stdout and b not in r.stdout and sha(a) not in r.stdout
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["HASH", "CONSUMER", "TIER", "STATUS", "ATTRIBUTES"]
    assert lines[1].split()[:4] == [sha(a)[:12], "alice", "gold", "active"]
    assert "team=infra" in lines[1] and "project=x" in lines[1]
    assert lines[2].split()[:4] == [sha(b)[:12], "bob", "default", "active"]

    r = key_cmd("revoke", "--store", store, b)
    assert r.returncode == 0, r.stderr
    r = key_cmd("list", "--store", store)
    assert r.stdout.splitlines()[2].split()[3] == "revoked"
    assert r.stdout.splitlines()[1].split()[3] == "active"
    # Revoking by hash prefix; too short and unknown prefixes are refused.
    assert key_cmd("revoke", "--store", store, sha(a)[:6]).returncode == 1
    assert key_cmd("revoke", "--store", store, "00000000").returncode == 1
    assert key_cmd("revoke", "--store", store, sha(a)[:8]).returncode == 0
    assert "revoked" in key_cmd("list", "--store", store).stdout.splitlines()[1]
    # Bad input.
    assert key_cmd("add", "--store", store).returncode == 1  # no consumer
    assert key_cmd("add", "--store", store, "--consumer", "a b").returncode == 1
    assert key_cmd("add", "--store", store, "--consumer", "c", "id=x").returncode == 1
    assert key_cmd("add", "--consumer", "c").returncode == 1  # no store
    assert key_cmd("list", "--store", str(tmp_path / "absent")).returncode == 1
    assert key_cmd("frobnicate").returncode == 1
    # No temporary files left behind.
    assert sorted(os.listdir(tmp_path)) == ["k.txt", "k.txt.lock"]


def test_key_command_refuses_broken_store(tmp_path):
    store = str(tmp_path / "k.txt")
    with open(store, "w") as f:
        f.write("zz alice gold\n")
    r = key_cmd("add", "--store", store, "--consumer", "bob")
    assert r.returncode == 1 and f"{store}:1:" in r.stderr
    assert open(store).read() == "zz alice gold\n"


# ---- logs ----------------------------------------------------------------------------------------


def test_keys_never_logged(tollgate_factory, up, store):
    key = add_key(store, "alice")
    revoked = add_key(store, "mallory")
    key_cmd("revoke", "--store", store, revoked)
    t = make(tollgate_factory, up, store)
    unknown = "tg_" + "A" * 43
    assert request(t, "/a", {"X-API-Key": key})[0] == 200
    assert request(t, "/b", {"X-API-Key": revoked})[0] == 401
    assert request(t, "/c", {"X-API-Key": unknown})[0] == 401
    assert request(t, "/d")[0] == 401
    t.stop()
    with open(t.path("logs", "access.log")) as f:
        access = f.read()
    err = t.error_log()
    for secret in (key, revoked, unknown):
        assert secret not in access and secret not in err
        assert sha(secret) not in access and sha(secret) not in err  # only a 12-digit prefix
    lines = access.splitlines()
    # $http_x_api_key shows "-": the key header is removed in the Access phase, whatever the
    # outcome (auth_key_hide_credentials on).
    assert all(line.split()[4] == "-" for line in lines), access
    assert lines[0].split()[:4] == ["/a", "alice", "ok", sha(key)[:12]]
    assert lines[1].split()[:4] == ["/b", "-", "revoked", sha(revoked)[:12]]
    assert lines[2].split()[:4] == ["/c", "-", "unknown", sha(unknown)[:12]]
    assert lines[3].split()[:4] == ["/d", "-", "missing", "-"]
    assert f"unknown API key (sha256 {sha(unknown)[:12]}...)" in err
    assert "auth_key: no API key" in err
    assert "auth_key: 1 accepted, 1 missing, 1 unknown, 1 revoked" in err


# ---- composition with limit_req -------------------------------------------------------------------


def test_limit_req_keyed_by_consumer(tollgate_factory, up, store):
    r = subprocess.run([BINARY, "-V"], capture_output=True, text=True)
    if "limit_req" not in r.stderr.split("modules:")[-1].split():
        pytest.skip("limit_req not compiled in")
    a = add_key(store, "alice")
    b = add_key(store, "bob")
    body = """
        location / {
            auth_key on;
            limit_req zone=per_consumer burst=2 nodelay;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body,
             http_extra="    limit_req_zone $consumer_id zone=per_consumer:64k rate=1r/m;")
    got_a = [request(t, "/", {"X-API-Key": a})[0] for _ in range(5)]
    assert got_a == [200, 200, 200, 429, 429]
    got_b = [request(t, "/", {"X-API-Key": b})[0] for _ in range(4)]
    assert got_b == [200, 200, 200, 429]  # bob has his own bucket
    # An unknown key has an empty $consumer_id: not limited, but refused by auth_key.
    assert [request(t, "/", {"X-API-Key": "nope"})[0] for _ in range(4)] == [401] * 4


def test_internal_redirect_into_protected_location_needs_a_key(tollgate_factory, up, store):
    key = add_key(store, "alice")
    body = """
        location /open/ {
            auth_key off;
            root {prefix}/nothing-here;
            error_page 404 /secure/;
        }
        location /secure/ {
            auth_key on;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, _, body = request(t, "/open/missing")
    assert status == 401, body
    assert up.requests == 0
    status, _, body = request(t, "/open/missing", {"X-API-Key": key})
    assert up.requests == 1
    assert upstream_headers(body)[0]["x-consumer-id"] == ["alice"]


def test_proxy_set_header_with_consumer_variables(tollgate_factory, up, store):
    key = add_key(store, "alice", "gold", "project=apollo")
    body = """
        location / {
            auth_key on;
            auth_key_forward_header off;
            proxy_set_header X-Project $consumer_project;
            proxy_set_header X-Consumer-Id $consumer_id;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, _, b = request(t, "/", {"X-API-Key": key, "X-Project": "spoof", "X-Consumer-Id": "root"})
    assert status == 200
    h, _ = upstream_headers(b)
    assert h["x-project"] == ["apollo"]
    assert h["x-consumer-id"] == ["alice"]
    assert "x-consumer-tier" not in h  # forwarding off: only what proxy_set_header sends


def test_odd_keys(tollgate_factory, up, store):
    key = add_key(store, "alice")
    t = make(tollgate_factory, up, store)
    assert request(t, "/", {"X-API-Key": "k" * 7000})[0] == 401
    assert request(t, "/", {"X-API-Key": key + " "})[0] == 200  # OWS is not part of the value
    assert request(t, "/", {"X-API-Key": key[:-1]})[0] == 401
    # Two X-API-Key headers: the first counts, and no copy reaches the upstream.
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    c.putrequest("GET", "/")
    c.putheader("X-API-Key", key)
    c.putheader("X-API-Key", "other")
    c.endheaders()
    r = c.getresponse()
    b = r.read()
    c.close()
    assert r.status == 200
    assert "x-api-key" not in upstream_headers(b)[0]


def test_error_page_after_authentication_keeps_the_consumer(tollgate_factory, up, store):
    key = add_key(store, "alice")
    body = """
        auth_key on;
        location /files/ {
            root {prefix}/nothing-here;
            error_page 404 /notfound/;
        }
        location /notfound/ {
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    # The key was hidden in /files/; the error page's location still knows the consumer.
    status, _, b = request(t, "/files/x", {"X-API-Key": key})
    assert status == 404
    assert upstream_headers(b)[0]["x-consumer-id"] == ["alice"]
    assert request(t, "/files/x")[0] == 401


def test_every_source_is_hidden(tollgate_factory, up, store):
    key = add_key(store, "alice")
    body = """
        location / {
            auth_key on;
            auth_key_source header:X-API-Key query:api_key bearer;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, _, b = request(t, "/p?api_key=second-copy&z=1",
                           {"X-API-Key": key, "Authorization": "Bearer third-copy"})
    assert status == 200
    h, info = upstream_headers(b)
    assert info["target"] == "/p?z=1"
    assert "authorization" not in h and "x-api-key" not in h
    # Another scheme in Authorization is not a key source: it passes.
    status, _, b = request(t, "/p", {"X-API-Key": key, "Authorization": "Basic dTpw"})
    assert status == 200
    assert upstream_headers(b)[0]["authorization"] == ["Basic dTpw"]


def test_concurrent_adds_lose_nothing(tmp_path):
    store = str(tmp_path / "k.txt")
    procs = [
        subprocess.Popen([BINARY, "key", "add", "--store", store, "--consumer", f"c{i}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(8)
    ]
    keys = []
    for p in procs:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        keys.append(out.strip())
    assert len(set(keys)) == 8
    listed = key_cmd("list", "--store", store).stdout.splitlines()[1:]
    assert sorted(line.split()[1] for line in listed) == sorted(f"c{i}" for i in range(8))
    text = open(store).read()
    assert all(sha(k) in text for k in keys)


def test_identity_headers_stripped_everywhere(tollgate_factory, up, store):
    key = add_key(store, "alice", "gold", "team=infra")
    body = """
        location /a/ {
            auth_key on;
            auth_key_forward_header X-Team $consumer_team;
            proxy_pass http://%s;
        }
        location /b/ {
            auth_key on;
            auth_key_forward_header off;
            proxy_pass http://%s;
        }
        location /c/ {
            proxy_pass http://%s;
        }
    """ % (up.addr, up.addr, up.addr)
    t = make(tollgate_factory, up, store, body)
    spoof = {"X-API-Key": key, "X-Team": "admins", "X-Consumer-Id": "root", "X-Consumer-Tier": "x"}
    for path in ("/a/", "/b/", "/c/"):
        status, _, b = request(t, path, spoof)
        assert status == 200
        h, _ = upstream_headers(b)
        assert h.get("x-team", []) == (["infra"] if path == "/a/" else []), path
        assert "x-consumer-id" not in h and "x-consumer-tier" not in h, path


# ---- the LMDB store -------------------------------------------------------------------------------


def test_lmdb_store_round_trip_and_reload(tollgate_factory, up, tmp_path):
    os.chmod(tmp_path, 0o755)
    path = str(tmp_path / "keys.mdb")
    store = "lmdb:" + path
    a = add_key(store, "alice", "gold", "team=infra")
    b = add_key(store, "bob")
    r = key_cmd("list", "--store", store)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[1]: line.split() for line in r.stdout.splitlines()[1:]}
    assert rows["alice"][:4] == [sha(a)[:12], "alice", "gold", "active"]
    assert rows["bob"][3] == "active"
    with open(path, "rb") as f:
        raw = f.read()
    assert a.encode() not in raw and b.encode() not in raw

    body = """
        location / {
            auth_key on;
            auth_key_forward_header X-Team $consumer_team;
            proxy_pass http://%s;
        }
    """ % up.addr
    t = make(tollgate_factory, up, store, body)
    status, _, resp = request(t, "/", {"X-API-Key": a})
    assert status == 200 and upstream_headers(resp)[0]["x-team"] == ["infra"]
    assert request(t, "/", {"X-API-Key": b})[0] == 200

    c = add_key(store, "carol")
    assert key_cmd("revoke", "--store", store, sha(b)[:8]).returncode == 0
    assert "revoked" in [l.split()[3] for l in key_cmd("list", "--store", store).stdout.splitlines()[1:]]
    reload_and_wait(t, lambda: request(t, "/", {"X-API-Key": c})[0] == 200)
    status, _, resp = request(t, "/", {"X-API-Key": b})
    assert status == 401 and json.loads(resp)["message"] == "API key revoked"
    assert request(t, "/", {"X-API-Key": a})[0] == 200


def test_lmdb_store_missing_is_a_config_error(tollgate_factory, up, tmp_path):
    t = make(tollgate_factory, up, "lmdb:" + str(tmp_path / "none.mdb"), start=False)
    rc, err = t.test_config()
    assert rc == 1 and f"{t.conf_path}:" in err and "none.mdb" in err


# ---- authorization: auth_key_allow / auth_key_deny ----------------------------------------------


def test_allow_and_deny_by_consumer_tier_and_attribute(tollgate_factory, up, store):
    gold = add_key(store, "alice", "gold", "team=infra")
    silver = add_key(store, "bob", "silver", "team=web")
    free = add_key(store, "carol", "free", "team=infra")
    banned = add_key(store, "mallory", "gold", "team=infra")
    body = f"""
        auth_key on;
        location / {{
            auth_key_deny id mallory;
            auth_key_allow tier gold silver;
            auth_key_deny all;
            proxy_pass http://{up.addr};
        }}
        location /infra/ {{
            auth_key_allow team infra;
            auth_key_deny all;
            proxy_pass http://{up.addr};
        }}
        location /open/ {{
            auth_key optional;
            auth_key_deny tier free;
            proxy_pass http://{up.addr};
        }}
        location /inherit/ {{
            proxy_pass http://{up.addr};
        }}
    """
    t = make(tollgate_factory, up, store, body=body)
    cases = [
        ("/x", gold, 200), ("/x", silver, 200), ("/x", free, 403), ("/x", banned, 403),
        ("/infra/x", gold, 200), ("/infra/x", silver, 403), ("/infra/x", free, 200),
        ("/open/x", gold, 200), ("/open/x", free, 403), ("/open/x", None, 200),
        ("/inherit/x", free, 200),  # no rules at the server level: nothing inherited
    ]
    for path, key, expect in cases:
        before = len(up.log)
        status, h, body_ = request(t, path, {"X-API-Key": key} if key else {})
        assert status == expect, (path, key, body_)
        if expect == 403:
            assert h["content-type"] == "application/json"
            assert json.loads(body_)["status"] == 403
            assert len(up.log) == before  # a denied consumer never reaches the upstream
    # Still 401 before any rule: authentication comes first.
    assert request(t, "/x", {"X-API-Key": "tg_" + "0" * 43})[0] == 401
    assert request(t, "/x")[0] == 401
    t.stop()
    err = t.error_log()
    assert 'consumer "mallory" denied' in err and 'consumer "carol" denied' in err
    assert banned not in err and free not in err


def test_deny_all_applies_to_the_anonymous_caller(tollgate_factory, up, store):
    key = add_key(store, "alice", "gold")
    body = f"""
        location / {{
            auth_key optional;
            auth_key_allow tier gold;
            auth_key_deny all;
            proxy_pass http://{up.addr};
        }}
    """
    t = make(tollgate_factory, up, store, body=body)
    assert request(t, "/", {"X-API-Key": key})[0] == 200
    assert request(t, "/")[0] == 403


@pytest.mark.parametrize("snippet,expect", [
    ("auth_key_allow tier;", 'invalid number of arguments in "auth_key_allow"'),
    ("auth_key_deny all x;", '"all" takes no values'),
    ("auth_key_allow $consumer_tier gold;", 'invalid value "$consumer_tier"'),
])
def test_rule_config_errors(tollgate_factory, up, store, snippet, expect):
    add_key(store, "alice")
    body = f"""
        location / {{
            auth_key on;
            {snippet}
            proxy_pass http://{up.addr};
        }}
    """
    t = make(tollgate_factory, up, store, body=body, start=False)
    code, err = t.test_config()
    assert code != 0
    assert expect in err, err
    assert "tollgate.conf:" in err, err
