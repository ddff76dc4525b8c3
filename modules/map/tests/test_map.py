"""The map module (nginx's `map`) against the real binary: values, regexes and captures,
hostnames, include, volatile, variables in the source and the value, and config errors."""
import http.client
import os
import re
import subprocess
import time

import pytest

from harness import BINARY


def compiled_modules():
    try:
        out = subprocess.run([BINARY, "-V"], capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout + out.stderr


pytestmark = pytest.mark.skipif(
    not re.search(r"\bmap\b", compiled_modules()), reason="the map module is not compiled in"
)


def http_block(maps, locations):
    return (
        "http {\n    include mime.types;\n%s\n    server {\n        listen 127.0.0.1:{port};\n"
        "        server_name _;\n%s\n    }\n}\n" % (maps, locations)
    )


def get(t, path="/", headers=None):
    """One GET on a fresh connection: (status, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def start(tollgate_factory, maps, locations):
    return tollgate_factory(http_block(maps, locations)).start()


TIERS = """
    map $http_x_tier $tier_rate {
        default 1r/s;
        pro     10r/s;
        ~^ent   100r/s;
    }
"""


def test_tiered_rate_values(tollgate_factory):
    t = start(tollgate_factory, TIERS, '        location / { return 200 "$tier_rate"; }')
    assert get(t) == (200, "1r/s")
    assert get(t, headers={"X-Tier": "pro"}) == (200, "10r/s")
    assert get(t, headers={"X-Tier": "PRO"}) == (200, "10r/s")  # strings ignore case
    assert get(t, headers={"X-Tier": "enterprise"}) == (200, "100r/s")
    assert get(t, headers={"X-Tier": "Enterprise"}) == (200, "1r/s")  # ~ is case-sensitive
    assert get(t, headers={"X-Tier": "free"}) == (200, "1r/s")


def test_no_default_gives_empty_value(tollgate_factory):
    t = start(
        tollgate_factory,
        "    map $uri $known { /a yes; }",
        '        location / { return 200 "[$known]"; }',
    )
    assert get(t, "/a") == (200, "[yes]")
    assert get(t, "/b") == (200, "[]")


def test_source_with_several_variables_and_value_with_variables(tollgate_factory):
    maps = """
    map "$http_x_tier:$uri" $route {
        default           "other $uri";
        "pro:/api"        "pro api for $http_x_user";
        ~*^ENT:/api/(.+)$ "ent $1 ($http_x_user)";
    }
    """
    t = start(tollgate_factory, maps, '        location / { return 200 "$route"; }')
    assert get(t, "/api", {"X-Tier": "pro", "X-User": "ann"}) == (200, "pro api for ann")
    assert get(t, "/api/orders/7", {"X-Tier": "ent", "X-User": "bo"}) == (
        200,
        "ent orders/7 (bo)",
    )
    assert get(t, "/x", {"X-Tier": "pro"}) == (200, "other /x")


def test_named_and_positional_captures(tollgate_factory):
    maps = r"""
    map $uri $who {
        ~^/users/(?<name>[a-z]+)/(\d+)$ "$name#$2";
        default none;
    }
    """
    t = start(tollgate_factory, maps, '        location / { return 200 "$who"; }')
    assert get(t, "/users/carol/12") == (200, "carol#12")
    assert get(t, "/users/Carol/12") == (200, "none")


def test_regexes_are_tried_in_order_after_strings(tollgate_factory):
    maps = r"""
    map $uri $pick {
        ~^/a     first;
        ~^/ab    second;
        /abc     exact;
        default  none;
    }
    """
    t = start(tollgate_factory, maps, '        location / { return 200 "$pick"; }')
    assert get(t, "/abd") == (200, "first")
    assert get(t, "/abc") == (200, "exact")
    assert get(t, "/ABC") == (200, "exact")
    assert get(t, "/zz") == (200, "none")


def test_hostnames(tollgate_factory):
    maps = r"""
    map $http_host $site {
        hostnames;
        default         other;
        example.com     exact;
        *.example.com   sub;
        .example.net    net;
        www.example.*   www;
        ~^api\d+\.      api;
    }
    """
    t = start(tollgate_factory, maps, '        location / { return 200 "$site"; }')
    cases = {
        "example.com": "exact",
        "EXAMPLE.com.": "exact",
        "a.b.example.com": "sub",
        "example.net": "net",
        "x.example.net": "net",
        "www.example.org": "www",
        "api7.test": "api",
        "example.org": "other",
    }
    for host, want in cases.items():
        assert get(t, headers={"Host": host}) == (200, want), host


def test_include_inside_map(tollgate_factory):
    t = tollgate_factory(
        http_block(
            "    map $http_x_key $owner {\n        default nobody;\n"
            "        include keys.map;\n    }\n",
            '        location / { return 200 "$owner"; }',
        )
    )
    with open(t.path("conf", "keys.map"), "w") as f:
        f.write("# key owner\nk-1 alice;\nk-2 bob;\n~^k-9 nines;\n")
    t.start()
    assert get(t, headers={"X-Key": "k-1"}) == (200, "alice")
    assert get(t, headers={"X-Key": "K-2"}) == (200, "bob")
    assert get(t, headers={"X-Key": "k-99"}) == (200, "nines")
    assert get(t, headers={"X-Key": "k-3"}) == (200, "nobody")


def test_escaped_parameter_names_are_keys(tollgate_factory):
    maps = r"""
    map $http_x_v $escaped {
        \default  was-default;
        \~tilde   was-tilde;
        \volatile was-volatile;
        default   d;
    }
    """
    t = start(tollgate_factory, maps, '        location / { return 200 "$escaped"; }')
    assert get(t, headers={"X-V": "default"}) == (200, "was-default")
    assert get(t, headers={"X-V": "~tilde"}) == (200, "was-tilde")
    assert get(t, headers={"X-V": "volatile"}) == (200, "was-volatile")
    assert get(t, headers={"X-V": "x"}) == (200, "d")


def test_value_is_cached_per_request_unless_volatile(tollgate_factory):
    # $status is not cacheable: during `return` (rewrite phase) it is not yet 200, in the log
    # phase it is. A plain map keeps the value computed first; a volatile one recomputes.
    maps = """
    map $status $st_cached { default "s=$status"; }
    map $status $st_fresh { volatile; default "s=$status"; }
    log_format maps "$st_cached|$st_fresh";
    """
    t = start(
        tollgate_factory,
        maps,
        "        access_log logs/maps.log maps;\n"
        '        location / { return 200 "$st_cached|$st_fresh"; }',
    )
    status, body = get(t)
    assert status == 200
    cached, fresh = body.split("|")
    assert cached == fresh and cached != "s=200", body
    deadline = time.monotonic() + 5
    line = ""
    while time.monotonic() < deadline and not line:
        try:
            with open(t.path("logs", "maps.log")) as f:
                line = f.read().strip()
        except FileNotFoundError:
            pass
        if not line:
            time.sleep(0.05)
    assert line == cached + "|s=200", line


def test_map_of_a_map(tollgate_factory):
    maps = """
    map $http_x_tier $tier { default free; pro pro; ent ent; }
    map $tier $limit { free 1; pro 10; ent 100; }
    """
    t = start(tollgate_factory, maps, '        location / { return 200 "$tier=$limit"; }')
    assert get(t, headers={"X-Tier": "ent"}) == (200, "ent=100")
    assert get(t) == (200, "free=1")


def test_redefined_map_replaces_the_first_and_a_cycle_is_bounded(tollgate_factory):
    # The second `map ... $a` replaces the first; $a now reads $b, which reads $a: a cycle that
    # nginx would recurse on. tollgate stops after a bounded nesting and answers.
    maps = """
    map $uri $a { default one; }
    map $uri $b { default "b($a)"; }
    map $uri $a { default "a($b)"; }
    """
    t = start(tollgate_factory, maps, '        location / { return 200 "$a"; }')
    status, body = get(t)
    assert status == 200
    assert body.startswith("a(b(a(b(") and len(body) < 4096
    assert get(t)[0] == 200  # the worker is still alive


def test_hash_size_directives_are_accepted(tollgate_factory):
    maps = "    map_hash_max_size 4096;\n    map_hash_bucket_size 128;\n" + TIERS
    t = start(tollgate_factory, maps, '        location / { return 200 "$tier_rate"; }')
    assert get(t, headers={"X-Tier": "pro"}) == (200, "10r/s")


# ---- config errors ---------------------------------------------------------------------------


def line_of(t, text):
    """The line number of the first line of t's config file that contains `text`."""
    with open(t.conf_path) as f:
        for n, l in enumerate(f, 1):
            if text in l:
                return n
    raise AssertionError(text + " not in the config")


def config_error(tollgate_factory, maps, locations='        location / { return 200 "x"; }'):
    t = tollgate_factory(http_block(maps, locations))
    rc, err = t.test_config()
    assert rc == 1, err
    return t, err


@pytest.mark.parametrize(
    "maps, line, reason",
    [
        ("map $uri $x {\n  a 1;\n  A 2;\n}", 3, 'conflicting parameter "A"'),
        ("map $uri $x {\n  default 1;\n  default 2;\n}", 3, "duplicate default map parameter"),
        ("map $uri $x {\n  a;\n}", 2, "invalid number of the map parameters"),
        ("map $uri $x {\n  ~^(a 1;\n}", 2, 'invalid regex "^(a": '),
        ("map $uri x {\n}", 1, 'invalid variable name "x"'),
        ("map $uri $x {\n  a $nope;\n}", 2, 'unknown "nope" variable'),
        ("map $nope $x {\n}", 1, 'unknown "nope" variable'),
        ("map $uri $host {\n}", 1, 'the duplicate "host" variable'),
        ("map $host $x {\n  hostnames;\n  a*b 1;\n}", 3, 'invalid hostname or wildcard "a*b"'),
        ("map $uri $x {\n  a { }\n}", 2, 'unexpected "{"'),
        ("map $uri $x;", 1, 'directive "map" has no opening "{"'),
        ("map $uri {\n}", 1, 'invalid number of arguments in "map" directive'),
        ("map_hash_max_size big;", 1, 'invalid value "big" in "map_hash_max_size" directive'),
    ],
)
def test_config_errors(tollgate_factory, maps, line, reason):
    # line: counted from the map's first line (1)
    t, err = config_error(tollgate_factory, maps)
    first = line_of(t, maps.splitlines()[0])
    assert f"{t.conf_path}:{first + line - 1}: {reason}" in err, err


def test_map_outside_http_is_rejected(tollgate_factory):
    t, err = config_error(
        tollgate_factory,
        "",
        '        location / { map $uri $x { } return 200 "x"; }',
    )
    assert '"map" directive is not allowed here' in err, err


def test_variable_must_be_defined_before_use(tollgate_factory):
    # As everywhere in tollgate, variables are resolved while the config is read: a map comes
    # before the directives that use its variable.
    t = tollgate_factory(
        "http {\n    server {\n        listen 127.0.0.1:{port};\n"
        '        location / { return 200 "$late"; }\n    }\n'
        "    map $uri $late { default x; }\n}\n"
    )
    rc, err = t.test_config()
    assert rc == 1
    line = line_of(t, '"$late"')
    assert f'{t.conf_path}:{line}: unknown "late" variable' in err, err


def test_include_error_names_the_included_file(tollgate_factory):
    t = tollgate_factory(http_block("    map $uri $x {\n        include bad.map;\n    }\n", ""))
    with open(t.path("conf", "bad.map"), "w") as f:
        f.write("a 1;\nb 2;\nA 3;\n")
    rc, err = t.test_config()
    assert rc == 1
    assert f'{t.path("conf", "bad.map")}:3: conflicting parameter "A"' in err, err
