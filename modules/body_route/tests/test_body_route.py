"""body_route: routing on a JSON body field through map + proxy_pass http://$backend, against
three real upstreams that report the hash of the body they received. Covers several values,
malformed / huge / field-less / non-object bodies under both error policies, chunked bodies, a
body that arrives in pieces, client_body_timeout while the body is read ahead, and the body
reaching the upstream byte for byte."""
import hashlib
import http.client
import json
import socket
import time

import pytest

from upstreams import EchoUpstream

LIMIT = 1024


@pytest.fixture
def routed(tollgate_factory):
    with EchoUpstream() as openai, EchoUpstream() as anthropic, EchoUpstream() as agents:
        block = f"""http {{
    include mime.types;
    client_max_body_size 8m;
    upstream openai {{ server {openai.addr}; }}
    upstream anthropic {{ server {anthropic.addr}; }}
    upstream agents {{ server {agents.addr}; }}
    map $json_model $backend {{ gpt-4 openai; claude-3 anthropic; default agents; }}
    server {{
        listen 127.0.0.1:{{port}};
        client_body_timeout 500ms;
        body_inspect_max_size {LIMIT};
        proxy_set_header X-Route "$json_model|$json_stream|$json_temperature|$body_route_error";
        location /v1/ {{ json_route_field model stream temperature; proxy_pass http://$backend; }}
        location /strict/ {{ json_route_field model; json_route_on_error 400;
                            proxy_pass http://$backend; }}
        location /plain/ {{ proxy_pass http://agents; }}
    }}
}}
"""
        t = tollgate_factory(block)
        t.start()
        yield t, {"openai": openai, "anthropic": anthropic, "agents": agents}


def post(t, path, body, chunked=False, piece=700):
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
    if chunked:
        def gen():
            for i in range(0, len(body), piece):
                yield body[i:i + piece]
        c.request("POST", path, body=gen(), encode_chunked=True,
                  headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    else:
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def route_of(status, data, body):
    assert status == 200, data
    info = json.loads(data)
    assert info["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert info["body_len"] == len(body)
    return info, dict((k.lower(), v) for k, v in info["headers"])["x-route"]


def which(ups, before):
    hit = [n for n, u in ups.items() if len(u.log) > before[n]]
    assert len(hit) == 1, hit
    return hit[0]


def counts(ups):
    return {n: len(u.log) for n, u in ups.items()}


@pytest.mark.parametrize("chunked", [False, True])
def test_routes_by_model_and_forwards_the_body_unchanged(routed, chunked):
    t, ups = routed
    cases = [
        ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, "openai"),
        ({"messages": [], "model": "claude-3", "stream": True, "temperature": 0.25}, "anthropic"),
        ({"model": "llama", "x": {"model": "gpt-4"}}, "agents"),  # nested keys do not count
        ({"model": "gpt-4", "model2": 1, "pad": "é" * 50}, "openai"),
    ]
    for obj, want in cases:
        body = json.dumps(obj, ensure_ascii=False).encode()
        before = counts(ups)
        status, data = post(t, "/v1/chat", body, chunked=chunked, piece=17)
        _, route = route_of(status, data, body)
        assert which(ups, before) == want, (obj, route)
    # The variables as the upstream saw them.
    body = b'{"model":"claude-3","stream":true,"temperature":0.25}'
    _, route = route_of(*post(t, "/v1/x", body, chunked=chunked), body)
    assert route == "claude-3|true|0.25|"


@pytest.mark.parametrize("chunked", [False, True])
def test_malformed_huge_fieldless_follow_the_default(routed, chunked):
    t, ups = routed
    huge = json.dumps({"model": "gpt-4", "pad": "z" * (LIMIT * 4)}).encode()
    bodies = [
        (b'{"model": "gpt-4",', "malformed"),
        (b'{"model": "gpt-4"} trailing', "malformed"),
        (b"[" * 5000, "malformed"),  # nesting past the bound, inside the size limit: 5000 > 1k
        (huge, "too_large"),
        (b'{"messages": []}', "missing"),
        (b'{"model": null}', "missing"),
        (b'{"model": {"name": "gpt-4"}}', "missing"),
        (b'["gpt-4"]', "not_object"),
        (b"\xff\xfe not utf-8", "malformed"),
    ]
    for body, error in bodies:
        before = counts(ups)
        status, data = post(t, "/v1/chat", body, chunked=chunked, piece=300)
        _, route = route_of(status, data, body)
        assert which(ups, before) == "agents", body[:40]
        if error == "malformed" and len(body) > LIMIT:
            error = "too_large"
        assert route.endswith("|" + error), (body[:40], route)


@pytest.mark.parametrize("chunked", [False, True])
def test_400_policy(routed, chunked):
    t, ups = routed
    huge = json.dumps({"model": "gpt-4", "pad": "z" * (LIMIT * 4)}).encode()
    for body in [b"{nope", huge, b'{"stream": true}', b"42"]:
        before = counts(ups)
        status, data = post(t, "/strict/x", body, chunked=chunked)
        assert status == 400, data
        err = json.loads(data)
        assert err["error"] == "bad_request" and err["status"] == 400
        assert counts(ups) == before
    body = b'{"model":"gpt-4"}'
    before = counts(ups)
    route_of(*post(t, "/strict/x", body, chunked=chunked), body)
    assert which(ups, before) == "openai"


def test_large_bodies_stream_through_unchanged(routed):
    t, ups = routed
    big = json.dumps({"model": "claude-3", "blob": "q" * (3 << 20)}).encode()
    for chunked in (False, True):
        before = counts(ups)
        route_of(*post(t, "/v1/big", big, chunked=chunked, piece=65536), big)
        assert which(ups, before) == "agents"  # too large to inspect: the default


def test_body_arriving_in_pieces_and_no_body(routed):
    t, ups = routed
    body = b'{"model": "gpt-4", "messages": []}'
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        s.sendall(b"POST /v1/p HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.2)
        s.sendall(body[10:20])
        time.sleep(0.2)
        s.sendall(body[20:])
        f = s.makefile("rb")
        status_line = f.readline()
        assert b" 200 " in status_line, status_line
    assert ups["openai"].log[-1]["body_sha256"] == hashlib.sha256(body).hexdigest()
    # A GET has no body: the field is missing, the default applies.
    before = counts(ups)
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    c.request("GET", "/v1/models")
    r = c.getresponse()
    r.read()
    assert r.status == 200
    assert which(ups, before) == "agents"


def test_client_body_timeout_while_reading_ahead(routed):
    t, ups = routed
    before = counts(ups)
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        s.sendall(b"POST /v1/p HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\"")
        s.settimeout(10)
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            b = s.recv(4096)
            if not b:
                break
            got += b
        assert got == b""  # closed (client_body_timeout 500ms), nothing sent upstream
    assert counts(ups) == before


def test_locations_without_the_directive_do_not_read_ahead(routed):
    t, ups = routed
    body = b'{"model":"gpt-4"}'
    info, route = route_of(*post(t, "/plain/x", body), body)
    assert route == "|||"  # not inspected: every $json_* is empty
