"""access_log and log_format: line formats, escaping, inheritance, buffering, reopen, errors."""
import json
import os
import re
import signal
import time
import urllib.request

import pytest

from harness import raw_request, server_block


def get(t, path="/", headers=None):
    req = urllib.request.Request(t.url(path), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path, n, timeout=5.0):
    """The file's lines once it has at least `n` (the log line is written after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = read_lines(path)
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def settle():
    """Time for a log line that would be written to be written."""
    time.sleep(0.3)


COMBINED = re.compile(
    r'^(?P<addr>127\.0\.0\.1) - (?P<user>-) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<ua>[^"]*)"$'
)


def test_default_combined_log(tollgate_factory):
    t = tollgate_factory(server_block('        location / { return 200 "hello"; }')).start()
    status, body = get(t, "/a/b?x=1", {"Referer": "http://ref.example/", "User-Agent": "tester/1.0"})
    assert status == 200 and body == b"hello"
    get(t, "/none")  # no Referer, urllib's own User-Agent
    lines = wait_lines(t.path("logs", "access.log"), 2)
    assert len(lines) == 2, lines
    m = COMBINED.match(lines[0])
    assert m, lines[0]
    assert m["request"] == "GET /a/b?x=1 HTTP/1.1"
    assert m["status"] == "200"
    assert m["bytes"] == "5"
    assert m["referer"] == "http://ref.example/"
    assert m["ua"] == "tester/1.0"
    # The time is now, in local time as nginx writes it.
    logged = time.mktime(time.strptime(m["time"][:20], "%d/%b/%Y:%H:%M:%S"))
    assert abs(logged - time.time()) < 60
    m2 = COMBINED.match(lines[1])
    assert m2, lines[1]
    assert m2["referer"] == "-"  # not found: "-"


def test_custom_format_variables(tollgate_factory):
    block = """http {
    log_format custom '$request_time|$status|$request_id|$http_x_foo|$arg_a|$time_iso8601'
                      '|$request_method|${uri}';
    server {
        listen 127.0.0.1:{port};
        access_log logs/custom.log custom;
        location / { return 200 "ok"; }
        location /missing { return 404; }
    }
}"""
    t = tollgate_factory(block).start()
    get(t, "/p?a=42&b=2", {"X-Foo": "bar baz"})
    get(t, "/missing")
    lines = wait_lines(t.path("logs", "custom.log"), 2)
    assert len(lines) == 2, lines
    f = lines[0].split("|")
    assert re.fullmatch(r"\d+\.\d{3}", f[0]), f
    assert float(f[0]) < 5
    assert f[1] == "200"
    assert re.fullmatch(r"[0-9a-f]{32}", f[2]), f
    assert f[3] == "bar baz"
    assert f[4] == "42"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}", f[5]), f
    assert f[6] == "GET"
    assert f[7] == "/p"
    g = lines[1].split("|")
    assert g[1] == "404"
    assert g[2] != f[2]
    assert g[3] == "-" and g[4] == "-"  # not found
    assert not os.path.exists(t.path("logs", "access.log"))  # every location has a log


def test_escape_json_parses(tollgate_factory):
    block = """http {
    log_format j escape=json '{"ua":"$http_user_agent","foo":"$http_x_foo",'
                             '"missing":"$http_x_none","status":$status}';
    server {
        listen 127.0.0.1:{port};
        access_log logs/json.log j;
        location / { return 200 "ok"; }
    }
}"""
    t = tollgate_factory(block).start()
    foo = 'q"uo\\te\tx\xe9z'  # quote, backslash, tab, a non-ASCII byte
    req = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: a \"b\" \\c\\\r\n"
        b"X-Foo: " + foo.encode("utf-8") + b"\r\n\r\n"
    )
    assert b" 200 " in raw_request(t.port, req).split(b"\r\n")[0]
    lines = wait_lines(t.path("logs", "json.log"), 1)
    assert len(lines) == 1, lines
    doc = json.loads(lines[0])
    assert doc == {"ua": 'a "b" \\c\\', "foo": foo, "missing": "", "status": 200}
    assert "\\t" in lines[0] and "\\\"" in lines[0]


def test_default_escaping(tollgate_factory):
    block = """http {
    log_format esc '[$http_x_foo]';
    log_format raw escape=none '[$http_x_foo] [$http_x_none]';
    server {
        listen 127.0.0.1:{port};
        access_log logs/esc.log esc;
        access_log logs/raw.log raw;
        location / { return 200 "ok"; }
    }
}"""
    t = tollgate_factory(block).start()
    req = b'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Foo: a"b\\c\td\xc3\xa9\r\n\r\n'
    raw_request(t.port, req)
    esc = wait_lines(t.path("logs", "esc.log"), 1)
    assert esc == ["[a\\x22b\\x5Cc\\x09d\\xC3\\xA9]"]
    with open(t.path("logs", "raw.log"), "rb") as f:
        assert f.read() == b'[a"b\\c\td\xc3\xa9] [-]\n'


def test_access_log_off_in_location(tollgate_factory):
    t = tollgate_factory(server_block(
        '        location / { return 200 "a"; }\n'
        '        location /quiet { access_log off; return 200 "q"; }'
    )).start()
    get(t, "/quiet")
    get(t, "/loud")
    lines = wait_lines(t.path("logs", "access.log"), 1)
    settle()
    lines = read_lines(t.path("logs", "access.log"))
    assert len(lines) == 1, lines
    assert '"GET /loud HTTP/1.1"' in lines[0]


def test_location_log_replaces_server_log(tollgate_factory):
    block = """http {
    access_log logs/http.log;
    server {
        listen 127.0.0.1:{port};
        access_log logs/server.log;
        location / { return 200 "a"; }
        location /api { access_log logs/api.log; return 200 "b"; }
    }
}"""
    t = tollgate_factory(block).start()
    get(t, "/api/x")
    get(t, "/other")
    api = wait_lines(t.path("logs", "api.log"), 1)
    srv = wait_lines(t.path("logs", "server.log"), 1)
    settle()
    api = read_lines(t.path("logs", "api.log"))
    srv = read_lines(t.path("logs", "server.log"))
    assert len(api) == 1 and "/api/x" in api[0]
    assert len(srv) == 1 and "/other" in srv[0]
    assert read_lines(t.path("logs", "http.log")) == []
    assert not os.path.exists(t.path("logs", "access.log"))


def test_two_access_logs(tollgate_factory):
    block = """http {
    log_format short '$request_method $uri $status';
    server {
        listen 127.0.0.1:{port};
        access_log logs/one.log;
        access_log logs/two.log short;
        location / { return 200 "a"; }
    }
}"""
    t = tollgate_factory(block).start()
    get(t, "/both")
    one = wait_lines(t.path("logs", "one.log"), 1)
    two = wait_lines(t.path("logs", "two.log"), 1)
    assert len(one) == 1 and COMBINED.match(one[0]), one
    assert two == ["GET /both 200"]


def test_buffer_flush_timer(tollgate_factory):
    block = """http {
    log_format short '$uri';
    server {
        listen 127.0.0.1:{port};
        access_log logs/buf.log short buffer=64k flush=1s;
        location / { return 200 "a"; }
    }
}"""
    t = tollgate_factory(block).start()
    start = time.monotonic()
    for i in range(5):
        get(t, f"/r{i}")
    time.sleep(0.3)
    if time.monotonic() - start < 0.9:
        assert read_lines(t.path("logs", "buf.log")) == []  # still in the buffer
    lines = wait_lines(t.path("logs", "buf.log"), 5, timeout=4)
    assert lines == [f"/r{i}" for i in range(5)]
    assert time.monotonic() - start >= 0.9
    # The timer keeps working for later lines.
    get(t, "/late")
    assert wait_lines(t.path("logs", "buf.log"), 6, timeout=4)[-1] == "/late"


def test_buffer_flushed_at_quit(tollgate_factory):
    block = """http {
    log_format short '$uri';
    server {
        listen 127.0.0.1:{port};
        access_log logs/buf.log short buffer=64k;
        location / { return 200 "a"; }
    }
}"""
    t = tollgate_factory(block).start()
    for i in range(3):
        get(t, f"/q{i}")
    time.sleep(1.2)
    assert read_lines(t.path("logs", "buf.log")) == []  # no flush= : only full buffers and exit
    t.signal(signal.SIGQUIT)
    t.wait_exit()
    assert read_lines(t.path("logs", "buf.log")) == ["/q0", "/q1", "/q2"]


def test_buffer_with_timer_flushed_at_quit(tollgate_factory):
    """A pending flush timer does not hold up QUIT, and what is pending is written."""
    block = """http {
    log_format short '$uri';
    server {
        listen 127.0.0.1:{port};
        access_log logs/buf.log short buffer=64k flush=1h;
        location / { return 200 "a"; }
    }
}"""
    t = tollgate_factory(block).start()
    get(t, "/pending")
    time.sleep(0.3)
    assert read_lines(t.path("logs", "buf.log")) == []
    start = time.monotonic()
    t.signal(signal.SIGQUIT)
    assert t.wait_exit(timeout=5) == 0
    assert time.monotonic() - start < 3
    assert read_lines(t.path("logs", "buf.log")) == ["/pending"]


def test_buffer_flushed_when_full(tollgate_factory):
    block = """http {
    log_format big '$uri $http_x_pad';
    server {
        listen 127.0.0.1:{port};
        access_log logs/buf.log big buffer=1k;
        location / { return 200 "a"; }
    }
}"""
    t = tollgate_factory(block).start()
    pad = "p" * 300
    for i in range(4):  # ~310 bytes each: the 4th does not fit in 1k
        get(t, f"/f{i}", {"X-Pad": pad})
    lines = wait_lines(t.path("logs", "buf.log"), 3)
    assert [line.split()[0] for line in lines] == ["/f0", "/f1", "/f2"]
    get(t, "/huge", {"X-Pad": "h" * 2000})  # larger than the buffer: flushes, then written whole
    lines = wait_lines(t.path("logs", "buf.log"), 5)
    assert [line.split()[0] for line in lines] == ["/f0", "/f1", "/f2", "/f3", "/huge"]
    assert lines[4] == "/huge " + "h" * 2000


def test_if_condition(tollgate_factory):
    block = """http {
    log_format short '$uri $arg_log';
    server {
        listen 127.0.0.1:{port};
        access_log logs/cond.log short if=$arg_log;
        location / { return 200 "a"; }
    }
}"""
    t = tollgate_factory(block).start()
    get(t, "/none")
    get(t, "/zero?log=0")
    get(t, "/empty?log=")
    get(t, "/yes?log=1")
    get(t, "/word?log=yes")
    lines = wait_lines(t.path("logs", "cond.log"), 2)
    settle()
    assert read_lines(t.path("logs", "cond.log")) == ["/yes 1", "/word yes"]


def test_usr1_reopens_renamed_log(tollgate_factory):
    t = tollgate_factory(server_block('        location / { return 200 "a"; }'), workers=2).start()
    log = t.path("logs", "access.log")
    get(t, "/before")
    assert len(wait_lines(log, 1)) == 1
    os.rename(log, log + ".1")
    get(t, "/between")  # still written to the renamed file
    assert len(wait_lines(log + ".1", 2)) == 2
    t.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not os.path.exists(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # the workers reopen after the master
    for i in range(4):
        get(t, f"/after{i}")
    new = wait_lines(log, 4)
    settle()
    new = read_lines(log)
    old = read_lines(log + ".1")
    assert len(new) == 4 and all("/after" in line for line in new), new
    assert len(old) == 2 and "/before" in old[0] and "/between" in old[1], old


def test_usr1_buffered_lines_go_to_old_file(tollgate_factory):
    """As nginx: USR1 flushes the buffers before reopening, so lines buffered before it land in
    the old (renamed) file at once, and lines after it in the new file."""
    block = """http {
    log_format short '$uri';
    server {
        listen 127.0.0.1:{port};
        access_log logs/buf.log short buffer=64k flush=1h;
        location / { return 200 "a"; }
    }
}"""
    t = tollgate_factory(block).start()
    log = t.path("logs", "buf.log")
    get(t, "/old1")
    get(t, "/old2")
    settle()
    assert read_lines(log) == []  # buffered: flush=1h never fires during the test
    os.rename(log, log + ".1")
    t.signal(signal.SIGUSR1)
    assert wait_lines(log + ".1", 2, timeout=4) == ["/old1", "/old2"]  # flushed by USR1
    deadline = time.monotonic() + 5
    while not os.path.exists(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(log)
    settle()  # the worker reopens after the master
    get(t, "/new")
    settle()
    assert read_lines(log) == []  # buffered again, now for the new file
    t.signal(signal.SIGQUIT)
    assert t.wait_exit(timeout=5) == 0
    assert read_lines(log) == ["/new"]
    assert read_lines(log + ".1") == ["/old1", "/old2"]


def test_bad_request_is_logged(tollgate_factory):
    t = tollgate_factory(server_block('        location / { return 200 "a"; }')).start()
    resp = raw_request(t.port, b"GARBAGE\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 400")
    lines = wait_lines(t.path("logs", "access.log"), 1)
    assert len(lines) == 1, lines
    m = COMBINED.match(lines[0])
    assert m, lines[0]
    assert m["status"] == "400"


def test_log_written_with_one_write_per_line_across_workers(tollgate_factory):
    t = tollgate_factory(server_block('        location / { return 200 "a"; }'), workers=2).start()
    n = 40
    for i in range(n):
        get(t, f"/many/{i}", {"User-Agent": "x" * 500})
    lines = wait_lines(t.path("logs", "access.log"), n)
    assert len(lines) == n
    assert all(COMBINED.match(line) for line in lines)


@pytest.mark.parametrize(
    "http_body, line, message",
    [
        ("server { listen 127.0.0.1:{port}; access_log logs/a.log nosuch; }", 8,
         'unknown log format "nosuch"'),
        ("log_format x '$uri';\nlog_format x '$status';", 9, 'duplicate "log_format" name "x"'),
        ("log_format combined '$uri';", 8, 'duplicate "log_format" name "combined"'),
        ("log_format x '$uri $no_such_var';", 8, 'unknown "no_such_var" variable'),
        ("log_format x escape=xml '$uri';", 8, 'unknown log format escaping "xml"'),
        ("access_log logs/a.log combined buffer=12q;", 8, 'invalid buffer size "12q"'),
        ("access_log logs/a.log combined buffer=0;", 8, 'invalid buffer size "0"'),
        ("access_log logs/a.log combined buffer=1g;", 8, 'invalid buffer size "1g"'),
        ("access_log logs/a.log combined flush=5s;", 8, 'no buffer is defined for access_log'),
        ("access_log logs/a.log combined buffer=4k flush=soon;", 8, 'invalid flush time "soon"'),
        ("access_log logs/a.log combined bogus=1;", 8, 'invalid parameter "bogus=1"'),
        ("access_log logs/a.log combined if=$nope;", 8, 'unknown "nope" variable'),
        ("access_log off combined;", 8, 'invalid parameter "combined"'),
        ("access_log logs/a.log combined buffer=4k;\naccess_log logs/a.log combined buffer=8k;", 9,
         'access_log "logs/a.log" already defined with conflicting parameters'),
        ("access_log logs/nodir/sub/a.log;", 8, 'open() "'),
        ("server { listen 127.0.0.1:{port}; log_format x '$uri'; }", 8,
         '"log_format" directive is not allowed here'),
    ],
)
def test_config_errors(tollgate_factory, http_body, line, message):
    t = tollgate_factory("http {\n" + http_body + "\n}")
    rc, err = t.test_config()
    assert rc != 0, err
    assert f"tollgate.conf:{line}:" in err, err
    assert message in err, err


def test_log_format_in_main_context_rejected(tollgate_factory):
    t = tollgate_factory("http { server { listen 127.0.0.1:{port}; } }", main="log_format x '$uri';")
    rc, err = t.test_config()
    assert rc != 0
    assert "tollgate.conf:5:" in err and '"log_format" directive is not allowed here' in err, err


def test_remote_user_and_valid_config(tollgate_factory):
    block = """http {
    log_format main '$remote_addr - $remote_user "$request"';
    server {
        listen 127.0.0.1:{port};
        access_log logs/main.log main;
        location / { return 200 "a"; }
    }
}"""
    t = tollgate_factory(block)
    rc, err = t.test_config()
    assert rc == 0, err
    t.start()
    get(t, "/u")
    assert wait_lines(t.path("logs", "main.log"), 1) == ['127.0.0.1 - - "GET /u HTTP/1.1"']
