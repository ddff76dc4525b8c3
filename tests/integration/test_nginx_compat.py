"""nginx configuration boilerplate that tollgate accepts, and server_tokens."""
import urllib.request

from harness import server_block


def test_server_tokens_on_by_default_and_off(tollgate_factory):
    t = tollgate_factory(
        server_block(
            'location /on { return 200 "x"; }\n'
            'location /off { server_tokens off; return 200 "x"; }'
        )
    ).start()
    with urllib.request.urlopen(t.url("/on"), timeout=5) as r:
        assert r.headers["Server"].startswith("tollgate/")
    with urllib.request.urlopen(t.url("/off"), timeout=5) as r:
        assert r.headers["Server"] == "tollgate"


def test_common_nginx_tuning_directives_are_accepted(tollgate_factory):
    http = """http {
    include mime.types;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    types_hash_max_size 2048;
    server_names_hash_bucket_size 64;
    client_header_buffer_size 1k;
    server_tokens off;
    server { listen 127.0.0.1:{port}; location / { return 200 "ok"; } }
}"""
    t = tollgate_factory(http)
    rc, err = t.test_config()
    assert rc == 0, err
    t.start()
    with urllib.request.urlopen(t.url("/"), timeout=5) as r:
        assert r.read() == b"ok"


def test_tuning_directive_values_are_still_checked(tollgate_factory):
    t = tollgate_factory(server_block('sendfile maybe;\nlocation / { return 200 "ok"; }'))
    rc, err = t.test_config()
    assert rc == 1
    assert 'tollgate.conf:11: invalid value "maybe" in "sendfile" directive, it must be "on" or "off"' in err
