"""`tollgate -t` on broken configurations: exit code 1 and the exact `FILE:LINE: reason`.

Each case writes a small configuration tree into a private prefix and runs the real binary with
`-p PREFIX/ -c conf/tollgate.conf -t`. FILE is the absolute path of the file holding the error
(an included file when the error is there) and LINE is the line of the offending token.
"""
import os
import re
import shutil
import subprocess
import tempfile
import textwrap

import pytest

from harness import BINARY, SOURCE

PORT = 18080  # `-t` never binds, so any port number will do


def run_t(prefix, *extra, conf="conf/tollgate.conf", flag="-t"):
    r = subprocess.run(
        [BINARY, "-p", prefix + "/", "-c", conf, flag, *extra], capture_output=True, text=True, timeout=30
    )
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def prefix():
    d = tempfile.mkdtemp(prefix="tollgate-conf-")
    os.makedirs(os.path.join(d, "conf"))
    os.makedirs(os.path.join(d, "logs"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(prefix, rel, text):
    path = os.path.join(prefix, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip("\n"))
    return path


def assert_error(rc, stderr, file, line, reason, regex=False):
    """rc must be 1 and stderr must hold the line `tollgate: [emerg] FILE:LINE: reason`."""
    assert rc == 1, f"exit code {rc}, stderr:\n{stderr}"
    expected = f"tollgate: [emerg] {file}:{line}: {reason}"
    lines = stderr.splitlines()
    if regex:
        # line and reason are regexes here
        pat = re.compile(re.escape(f"tollgate: [emerg] {file}:") + str(line) + ": " + reason)
        assert any(pat.fullmatch(l) for l in lines), f"no line matching {pat.pattern!r} in:\n{stderr}"
    else:
        assert expected in lines, f"expected line:\n  {expected}\ngot stderr:\n{stderr}"
    assert "syntax is ok" not in stderr
    assert "test is successful" not in stderr


# Each case: (id, main config text, {relative path: text} extra files, (file, line, reason) where
# file is relative to the prefix, extra command-line args). Line numbers count from the first line
# of the dedented text.
CASES = [
    (
        "unknown-directive",
        """
        events {
        }
        http {
            server {
                listen 127.0.0.1:18080;
                frobnicate on;
            }
        }
        """,
        {},
        ("conf/tollgate.conf", 6, 'unknown directive "frobnicate"'),
        (),
    ),
    (
        "listen-in-http",
        """
        events {}
        http {
            default_type text/plain;
            listen 127.0.0.1:18080;
        }
        """,
        {},
        ("conf/tollgate.conf", 4, '"listen" directive is not allowed here'),
        (),
    ),
    (
        "worker_processes-in-server",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;

                worker_processes 2;
            }
        }
        """,
        {},
        ("conf/tollgate.conf", 6, '"worker_processes" directive is not allowed here'),
        (),
    ),
    (
        "location-in-http",
        """
        events {}
        http {
            location / { return 200; }
        }
        """,
        {},
        ("conf/tollgate.conf", 3, '"location" directive is not allowed here'),
        (),
    ),
    (
        "wrong-argument-count",
        """
        worker_processes 1
            2;
        events {}
        http {}
        """,
        {},
        ("conf/tollgate.conf", 1, 'invalid number of arguments in "worker_processes" directive'),
        (),
    ),
    (
        "listen-without-arguments",
        """
        events {}
        http {
            server {
                listen;
            }
        }
        """,
        {},
        ("conf/tollgate.conf", 4, 'invalid number of arguments in "listen" directive'),
        (),
    ),
    (
        "worker_processes-abc",
        """
        daemon off;
        worker_processes abc;
        events {}
        http {}
        """,
        {},
        ("conf/tollgate.conf", 2, 'invalid value "abc" in "worker_processes" directive'),
        (),
    ),
    (
        "keepalive_timeout-5x",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;
                location / {
                    keepalive_timeout 5x;
                }
            }
        }
        """,
        {},
        ("conf/tollgate.conf", 6, 'invalid value "5x" in "keepalive_timeout" directive'),
        (),
    ),
    (
        "client_max_body_size-1q",
        """
        events {}
        http {
            client_max_body_size 1q;
        }
        """,
        {},
        ("conf/tollgate.conf", 3, 'invalid value "1q" in "client_max_body_size" directive'),
        (),
    ),
    (
        "daemon-maybe",
        """
        daemon maybe;
        events {}
        http {}
        """,
        {},
        ("conf/tollgate.conf", 1, 'invalid value "maybe" in "daemon" directive, it must be "on" or "off"'),
        (),
    ),
    (
        "worker_connections-0",
        """
        events {
            worker_connections 0;
        }
        http {}
        """,
        {},
        ("conf/tollgate.conf", 2, 'invalid value "0" in "worker_connections" directive'),
        (),
    ),
    (
        # No trailing newline: the end of file is on line 4.
        "unterminated-block",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;""",
        {},
        ("conf/tollgate.conf", 4, 'unexpected end of file, expecting "}"'),
        (),
    ),
    (
        "missing-semicolon-at-eof",
        """
        events {}
        http {}
        worker_processes 2""",
        {},
        ("conf/tollgate.conf", 3, 'unexpected end of file, expecting ";" or "}"'),
        (),
    ),
    (
        "unterminated-quote-reports-opening-line",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;
                location / {
                    return 200 "hello;
                }
            }
        }
        """,
        {},
        ("conf/tollgate.conf", 6, "unterminated quoted string"),
        (),
    ),
    (
        "stray-closing-brace",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;
            }
        }
        }
        """,
        {},
        ("conf/tollgate.conf", 7, 'unexpected "}"'),
        (),
    ),
    (
        "server-without-brace",
        """
        events {}
        http {
            server;
        }
        """,
        {},
        ("conf/tollgate.conf", 3, 'directive "server" has no opening "{"'),
        (),
    ),
    (
        "include-missing-file",
        """
        events {}
        http {

            include missing.conf;
        }
        """,
        {},
        ("conf/tollgate.conf", 4, 'open() "{prefix}/conf/missing.conf" failed (No such file or directory)'),
        (),
    ),
    (
        "error-inside-included-file",
        """
        events {}
        http {
            include servers/*.conf;
        }
        """,
        {
            "conf/servers/a.conf": """
                server {
                    listen 127.0.0.1:18080;
                    location / {
                        return 200 "a";
                    }
                }
                """,
            "conf/servers/b.conf": """
                # b.conf: the second server

                server {
                    listen 127.0.0.1:18081;
                    bogus_directive 1;
                }
                """,
        },
        ("conf/servers/b.conf", 5, 'unknown directive "bogus_directive"'),
        (),
    ),
    (
        "missing-include-inside-included-file",
        """
        events {}
        http {
            include site.conf;
        }
        """,
        {
            "conf/site.conf": """
                server {
                    listen 127.0.0.1:18080;
                    include nope/extra.conf;
                }
                """,
        },
        (
            "conf/site.conf",
            3,
            'open() "{prefix}/conf/nope/extra.conf" failed (No such file or directory)',
        ),
        (),
    ),
    (
        "recursive-include",
        """
        events {}
        http {
            include loop.conf;
        }
        """,
        {"conf/loop.conf": "# loop\n\ninclude tollgate.conf;\n"},
        ("conf/loop.conf", 3, 'recursive include of "{prefix}/conf/tollgate.conf"'),
        (),
    ),
    (
        "duplicate-listen-in-one-server",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;
                listen 127.0.0.1:18080;
            }
        }
        """,
        {},
        ("conf/tollgate.conf", 5, "duplicate listen 127.0.0.1:18080"),
        (),
    ),
    (
        "duplicate-location",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;
                location /a { return 200 "1"; }
                location /b { return 200 "2"; }
                location /a { return 200 "3"; }
            }
        }
        """,
        {},
        ("conf/tollgate.conf", 7, 'duplicate location "/a"'),
        (),
    ),
    (
        "unknown-variable",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;
                location / {
                    return 200 "$nope";
                }
            }
        }
        """,
        {},
        ("conf/tollgate.conf", 6, 'unknown "nope" variable'),
        (),
    ),
    (
        "g-bad-directive",
        """
        events {}
        http {}
        """,
        {},
        ("command line", 1, 'unknown directive "bogus"'),
        ("-g", "daemon off; bogus on;"),
    ),
    (
        "g-bad-value",
        """
        events {}
        http {}
        """,
        {},
        ("command line", 1, 'invalid value "lots" in "worker_processes" directive'),
        ("-g", "worker_processes lots;"),
    ),
]


@pytest.mark.parametrize("main,files,where,extra", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_config(prefix, main, files, where, extra):
    write(prefix, "conf/tollgate.conf", main)
    for rel, text in files.items():
        write(prefix, rel, text)
    file, line, reason = where
    if file != "command line":
        file = os.path.join(prefix, file)
    rc, _, err = run_t(prefix, *extra)
    assert_error(rc, err, file, line, reason.replace("{prefix}", prefix))


def test_bad_regex_location(prefix):
    write(
        prefix,
        "conf/tollgate.conf",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080;
                location ~ ( {
                    return 200;
                }
            }
        }
        """,
    )
    rc, _, err = run_t(prefix)
    assert_error(rc, err, os.path.join(prefix, "conf/tollgate.conf"), 5, r'invalid regex "\(": .+', regex=True)


def test_two_default_servers_on_one_address(prefix):
    # nginx reports the second `listen ... default_server` directive (its own line).
    write(
        prefix,
        "conf/tollgate.conf",
        """
        events {}
        http {
            server {
                listen 127.0.0.1:18080 default_server;
            }
            server {
                server_name b.example;
                listen 127.0.0.1:18080 default_server;
            }
        }
        """,
    )
    rc, _, err = run_t(prefix)
    assert_error(rc, err, os.path.join(prefix, "conf/tollgate.conf"), 8, "a duplicate default server for 127.0.0.1:18080")


def test_missing_events(prefix):
    conf = write(prefix, "conf/tollgate.conf", "worker_processes 1;\nhttp {\n}\n")
    rc, _, err = run_t(prefix)
    assert_error(rc, err, conf, r"\d+", r'no "events" section in configuration', regex=True)


def test_missing_http(prefix):
    conf = write(prefix, "conf/tollgate.conf", "worker_processes 1;\nevents {\n}\n")
    rc, _, err = run_t(prefix)
    assert_error(rc, err, conf, r"\d+", r'no "http" section in configuration', regex=True)


def test_include_glob_without_matches_is_fine(prefix):
    conf = write(
        prefix,
        "conf/tollgate.conf",
        """
        events {}
        http {
            include sites-enabled/*.conf;
            include /nonexistent-dir-for-tollgate-test/*.conf;
            server {
                listen 127.0.0.1:18080;
            }
        }
        """,
    )
    rc, _, err = run_t(prefix)
    assert rc == 0, err
    assert f"tollgate: the configuration file {conf} syntax is ok" in err.splitlines()
    assert f"tollgate: configuration file {conf} test is successful" in err.splitlines()


def test_failure_message_names_the_absolute_config_path(prefix):
    # nginx: "configuration file /abs/path/nginx.conf test failed", the same absolute path the
    # success message uses.
    conf = write(prefix, "conf/tollgate.conf", "events {}\nhttp {}\nbogus;\n")
    rc, _, err = run_t(prefix)
    assert rc == 1
    assert err.splitlines()[-1] == f"tollgate: configuration file {conf} test failed", err


def test_quiet_test_prints_nothing_on_success(prefix):
    write(prefix, "conf/tollgate.conf", "events {}\nhttp {}\n")
    rc, out, err = run_t(prefix, "-q")
    assert rc == 0
    assert err == "" and out == ""


def test_dump_expands_includes(prefix):
    main = write(
        prefix,
        "conf/tollgate.conf",
        """
        events {}
        http {
            include servers/*.conf;
        }
        """,
    )
    a = write(prefix, "conf/servers/a.conf", "server {\n    listen 127.0.0.1:18080;  # server-a\n}\n")
    b = write(prefix, "conf/servers/b.conf", "server {\n    listen 127.0.0.1:18081;  # server-b\n}\n")
    rc, out, err = run_t(prefix, flag="-T")
    assert rc == 0, err
    assert "test is successful" in err
    headers = [l for l in out.splitlines() if l.startswith("# configuration file ")]
    assert headers == [f"# configuration file {p}:" for p in (main, a, b)], out
    # Each section holds that file's text verbatim.
    sections = re.split(r"^# configuration file .*:\n", out, flags=re.M)[1:]
    assert len(sections) == 3
    for text, path in zip(sections, (main, a, b)):
        with open(path) as f:
            assert text.startswith(f.read()), (path, text)


def test_dump_of_broken_config_fails(prefix):
    write(prefix, "conf/tollgate.conf", "events {}\nhttp {\n  bogus 1;\n}\n")
    rc, out, err = run_t(prefix, flag="-T")
    assert_error(rc, err, os.path.join(prefix, "conf/tollgate.conf"), 3, 'unknown directive "bogus"')
    assert "# configuration file" not in out


def test_missing_main_config_file(prefix):
    rc, _, err = run_t(prefix, conf="conf/absent.conf")
    path = os.path.join(prefix, "conf/absent.conf")
    assert rc == 1
    assert f'tollgate: [emerg] {path}: open() "{path}" failed (No such file or directory)' in err.splitlines(), err


def test_shipped_config_passes(tmp_path):
    """conf/tollgate.conf from the repository passes `-t`.

    `-t` opens the log files like nginx does, and the repository has no logs/ directory (it is
    gitignored; scripts/quickstart.sh creates it), so the prefix is a mirror of the repository
    root: conf/ and html/ are symlinks to the real ones, logs/ is a fresh directory.
    """
    root = tmp_path / "root"
    root.mkdir()
    (root / "logs").mkdir()
    os.symlink(os.path.join(SOURCE, "conf"), root / "conf")
    os.symlink(os.path.join(SOURCE, "html"), root / "html")
    r = subprocess.run(
        [BINARY, "-p", str(root) + "/", "-c", "conf/tollgate.conf", "-t"], capture_output=True, text=True, timeout=30
    )
    conf = f"{root}/conf/tollgate.conf"
    assert r.returncode == 0, r.stderr
    assert f"tollgate: the configuration file {conf} syntax is ok" in r.stderr.splitlines(), r.stderr
    assert f"tollgate: configuration file {conf} test is successful" in r.stderr.splitlines(), r.stderr


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="nginx checks `user` only when run as root")


@needs_root
def test_unknown_user(prefix):
    # nginx: getpwnam("...") failed in FILE:LINE, at configuration time (so also under -t).
    conf = write(prefix, "conf/tollgate.conf", "daemon off;\n\nuser tollgate-no-such-user;\nevents {}\nhttp {}\n")
    rc, _, err = run_t(prefix)
    assert_error(rc, err, conf, 3, 'getpwnam("tollgate-no-such-user") failed')


@needs_root
def test_unknown_group(prefix):
    conf = write(prefix, "conf/tollgate.conf", "user nobody tollgate-no-such-group;\nevents {}\nhttp {}\n")
    rc, _, err = run_t(prefix)
    assert_error(rc, err, conf, 1, 'getgrnam("tollgate-no-such-group") failed')
