"""split_clients: the split of 20,000 keys through the real binary, stickiness, routing with
proxy_pass http://$variant, config errors, and the exact bucket of every key compared with a
real nginx running the same block (skipped when nginx is not installed)."""
import collections
import http.client
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from harness import free_port, wait_port
from upstreams import EchoUpstream

SPLIT = """
split_clients "${arg_k}" $variant {
    5%    v2;
    20%   v3;
    0.5%  x;
    *     v1;
}
"""
SHARES = {"v2": 5.0, "v3": 20.0, "x": 0.5, "v1": 74.5}


def http_block(extra, locations):
    return ("http {\n    include mime.types;\n" + extra +
            "    server {\n        listen 127.0.0.1:{port};\n" + locations + "\n    }\n}\n")


def variants(port, keys, deadline_s=120):
    """GET /v?k=KEY for every key over one keep-alive connection; returns the bodies."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    deadline = time.monotonic() + deadline_s
    for k in keys:
        c.request("GET", "/v?k=" + k)
        r = c.getresponse()
        assert r.status == 200
        out.append(r.read().decode())
        assert time.monotonic() < deadline, "too slow"
    c.close()
    return out


def keys(n, salt="user"):
    return [f"{salt}{i}x{(i * 2654435761) % 1000003}" for i in range(n)]


def test_twenty_thousand_keys_within_one_percent_and_sticky(tollgate_factory):
    t = tollgate_factory(http_block(SPLIT, 'location /v { return 200 "$variant"; }'))
    t.start()
    ks = keys(20000)
    got = variants(t.port, ks)
    counts = collections.Counter(got)
    for v, share in SHARES.items():
        assert abs(100.0 * counts[v] / len(ks) - share) <= 1.0, (v, counts)
    # Sticky: the same keys again (a sample), on a fresh connection, land the same.
    sample = ks[::50]
    assert variants(t.port, sample) == got[::50]


def test_routes_proxy_pass_by_variant(tollgate_factory):
    with EchoUpstream() as stable, EchoUpstream() as canary:
        ups = (f"upstream stable {{ server {stable.addr}; }}\n"
               f"upstream canary {{ server {canary.addr}; }}\n"
               'split_clients "${http_x_user}" $pool { 30% canary; * stable; }\n')
        t = tollgate_factory(http_block(ups, "location / { proxy_pass http://$pool; }"))
        t.start()
        users = [f"u{i}" for i in range(200)]
        first = {}
        for u in users:
            c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
            c.request("GET", "/p", headers={"X-User": u})
            r = c.getresponse()
            assert r.status == 200
            r.read()
            c.close()
        n_canary, n_stable = len(canary.log), len(stable.log)
        assert n_canary + n_stable == 200
        assert 30 <= n_canary <= 90, n_canary  # 30% of 200, loosely
        # Each user always reaches the same pool.
        for u in users[:20]:
            before = (len(canary.log), len(stable.log))
            c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
            c.request("GET", "/p", headers={"X-User": u})
            c.getresponse().read()
            c.close()
            first[u] = "canary" if len(canary.log) > before[0] else "stable"
            c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
            c.request("GET", "/p", headers={"X-User": u})
            c.getresponse().read()
            c.close()
            again = "canary" if len(canary.log) > before[0] + (first[u] == "canary") else "stable"
            assert again == first[u]


@pytest.mark.parametrize("block,msg", [
    ("split_clients $arg_k $v { 60% a; 41% b; }", "percent total is greater than 100%"),
    ("split_clients $arg_k $v { * a; 1% b; }", "percent total is greater than 100%"),
    ("split_clients $arg_k $v { 5.555% a; }", 'invalid percent value "5.555%"'),
    ("split_clients $arg_k $v { 0% a; }", 'invalid percent value "0%"'),
    ("split_clients $arg_k $v { 5% a b; }", "invalid number of arguments"),
    ("split_clients $arg_k v { 5% a; }", 'invalid value "v"'),
    ("split_clients $nope $v { 5% a; }", "nope"),
])
def test_config_errors(tollgate_factory, block, msg):
    t = tollgate_factory(http_block(block + "\n", "location / { return 200 $v; }"))
    rc, err = t.test_config()
    assert rc == 1 and msg in err and "tollgate.conf:" in err, err


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_same_bucket_as_nginx_for_every_key(tollgate_factory):
    t = tollgate_factory(http_block(SPLIT, 'location /v { return 200 "$variant"; }'))
    t.start()
    prefix = tempfile.mkdtemp(prefix="nginx-split-")
    port = free_port()
    conf = f"""
daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/error.log;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    {SPLIT}
    server {{
        listen 127.0.0.1:{port};
        location /v {{ return 200 "$variant"; }}
    }}
}}
"""
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(conf)
    p = subprocess.Popen([NGINX, "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_port(port, timeout=10):
            pytest.skip("nginx did not start: " + p.stderr.read(2000).decode(errors="replace")
                        if p.poll() is not None else "nginx did not start")
        # Odd lengths, empty, long and non-ASCII (percent-encoded) keys too.
        ks = keys(3000, "k") + ["", "a", "ab", "abc", "abcd", "abcde", "x" * 300, "%C3%A9t%C3%A9"]
        theirs = variants(port, ks)
        ours = variants(t.port, ks)
        diff = [(k, a, b) for k, a, b in zip(ks, ours, theirs) if a != b]
        assert not diff, diff[:10]
        assert set(theirs) == set(SHARES)
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)
