"""The command line: -v -V -h, bad options, -g, -e, and -s reaching a running master."""
import os
import signal
import socket
import subprocess
import time

import pytest

from harness import BINARY, raw_request, server_block, split_responses

BODY = 'location / { return 200 "pid=$pid"; }'


def run(*args, timeout=30):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout, interval=0.02):
    """Polls predicate until it returns a true value or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def get(port, path="/"):
    data = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    responses = split_responses(data)
    assert len(responses) == 1, data
    return responses[0]


def write_raw_config(t, text):
    """Replaces t's configuration with `text` ({port} is substituted)."""
    with open(t.conf_path, "w") as f:
        f.write(text.replace("{port}", str(t.port)))


def start_with_args(t, *args, env=None):
    """Starts t's master with extra command-line arguments (through harness's start) and waits for
    its port."""
    plain = t.command
    t.command = lambda *more: plain(*args, *more)
    try:
        t.start(env=env)
    finally:
        del t.command  # back to the class's method
    return t


# ---- informational options ------------------------------------------------------------------


def test_v_prints_version():
    r = run("-v")
    assert r.returncode == 0
    lines = (r.stdout + r.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("tollgate version: tollgate/"), lines
    assert lines[0].split("/", 1)[1][0].isdigit()


def test_V_lists_compiled_in_modules():
    r = run("-V")
    assert r.returncode == 0
    text = r.stdout + r.stderr
    assert text.startswith("tollgate version: tollgate/")
    module_lines = [l for l in text.splitlines() if l.startswith("modules:")]
    assert len(module_lines) == 1, text
    modules = module_lines[0].split(":", 1)[1].split()
    for m in ("core", "http_core", "rewrite", "access_log", "static"):
        assert m in modules, modules
    # The built-in modules come first.
    assert modules[:2] == ["core", "http_core"]


@pytest.mark.parametrize("opt", ["-h", "-?"])
def test_help(opt):
    r = run(opt)
    assert r.returncode == 0
    text = r.stdout + r.stderr
    assert text.startswith("Usage: tollgate")
    for o in ("-s signal", "-p prefix", "-c filename", "-e filename", "-g directives", "-t", "-T", "-q", "-v", "-V"):
        assert o in text, o


@pytest.mark.parametrize("args", [["-x"], ["--help"], ["-t", "bogus"]])
def test_invalid_option_exits_1(args):
    r = run(*args)
    assert r.returncode == 1
    assert f'tollgate: invalid option: "{args[-1]}"' in r.stderr


@pytest.mark.parametrize("opt", ["-c", "-p", "-g", "-s", "-e"])
def test_option_without_its_value_exits_1(opt):
    r = run(opt)
    assert r.returncode == 1
    assert f'option "{opt}" requires' in r.stderr


def test_options_accept_attached_values(tollgate_factory):
    t = tollgate_factory(server_block(BODY))
    r = subprocess.run(
        [BINARY, "-p" + t.prefix + "/", "-cconf/tollgate.conf", "-t"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert f"configuration file {t.conf_path} test is successful" in r.stderr


# ---- -g and -e --------------------------------------------------------------------------------

RAW_CONFIG = """\
daemon off;
pid logs/tollgate.pid;
error_log logs/error.log info;
events { worker_connections 64; }
http {
    server {
        listen 127.0.0.1:{port};
        location / { return 200 "pid=$pid"; }
    }
}
"""


def test_g_sets_worker_processes(tollgate_factory):
    t = tollgate_factory("")
    write_raw_config(t, RAW_CONFIG)
    start_with_args(t, "-g", "worker_processes 2;")
    pids = t.wait_workers(2, timeout=5)
    # They are serving workers, not stragglers: both answer.
    seen = set()
    deadline = time.monotonic() + 10
    for _ in range(400):
        if len(seen) == 2 or time.monotonic() > deadline:
            break
        status, _, body = get(t.port)
        assert status == 200
        seen.add(int(body.decode().split("=")[1]))
    assert seen == set(pids)
    # And the configuration test agrees that the directive is valid there.
    r = subprocess.run(t.command("-t", "-g", "worker_processes 2;"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_g_without_it_one_worker(tollgate_factory):
    """The control for test_g_sets_worker_processes: nginx's default is one worker."""
    t = tollgate_factory("")
    write_raw_config(t, RAW_CONFIG)
    start_with_args(t)
    time.sleep(0.3)
    assert len(t.wait_workers(1, timeout=5)) == 1


NO_ERROR_LOG_CONFIG = """\
daemon off;
pid logs/tollgate.pid;
events { worker_connections 64; }
http {
    server {
        listen 127.0.0.1:{port};
        location / { return 200 "pid=$pid"; }
    }
}
"""


def test_e_points_the_error_log_elsewhere(tollgate_factory):
    t = tollgate_factory("")
    write_raw_config(t, NO_ERROR_LOG_CONFIG)
    start_with_args(t, "-e", "logs/elsewhere.log")
    elsewhere = t.path("logs", "elsewhere.log")
    # A worker crash is logged at [error], which every level shows.
    worker = t.wait_workers(1)[0]
    os.kill(worker, signal.SIGKILL)
    t.wait_workers(1, exclude=(worker,))

    def logged():
        try:
            with open(elsewhere) as f:
                return f"worker process {worker}" in f.read()
        except FileNotFoundError:
            return False

    assert wait_for(logged, 3), "the crash was not logged to the -e file"
    assert not os.path.exists(t.path("logs", "error.log")) or f"process {worker}" not in t.error_log()


def test_e_stderr(tollgate_factory):
    t = tollgate_factory("")
    write_raw_config(t, NO_ERROR_LOG_CONFIG)
    start_with_args(t, "-e", "stderr")
    worker = t.wait_workers(1)[0]
    os.kill(worker, signal.SIGKILL)
    t.wait_workers(1, exclude=(worker,))
    time.sleep(0.2)
    t.signal(signal.SIGTERM)
    assert t.wait_exit(5) == 0
    err = t.stderr()
    assert f"worker process {worker}" in err and "exited on signal 9" in err, err


# ---- -s ---------------------------------------------------------------------------------------


def signal_cmd(t, name):
    return subprocess.run(t.command("-s", name), capture_output=True, text=True, timeout=30)


def test_pid_file_holds_the_master_pid(tollgate_factory):
    t = tollgate_factory(server_block(BODY)).start()
    with open(t.path("logs", "tollgate.pid")) as f:
        assert int(f.read().strip()) == t.proc.pid


def test_s_reload_starts_new_workers(tollgate_factory):
    t = tollgate_factory(server_block(BODY), workers=2).start()
    old = t.wait_workers(2)
    r = signal_cmd(t, "reload")
    assert r.returncode == 0, r.stderr

    def replaced():
        pids = t.worker_pids()
        return len(pids) == 2 and not set(pids) & set(old)

    assert wait_for(replaced, 5), f"old {old}, now {t.worker_pids()}"
    status, _, body = get(t.port)
    assert status == 200 and int(body.decode().split("=")[1]) not in old
    assert t.proc.poll() is None


def test_s_reload_picks_up_the_new_config(tollgate_factory):
    t = tollgate_factory(server_block('location / { return 200 "one"; }')).start()
    assert get(t.port)[2] == b"one"
    t.write_config(server_block('location / { return 200 "two"; }'))
    assert signal_cmd(t, "reload").returncode == 0
    assert wait_for(lambda: get(t.port)[2] == b"two", 5)


def test_s_reopen_reopens_the_error_log(tollgate_factory):
    t = tollgate_factory(server_block(BODY)).start()
    log = t.path("logs", "error.log")
    assert wait_for(lambda: os.path.exists(log), 3)
    os.rename(log, log + ".1")
    r = signal_cmd(t, "reopen")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: os.path.exists(log), 3), "error.log was not recreated"
    # What the master logs next goes to the new file.
    worker = t.wait_workers(1)[0]
    os.kill(worker, signal.SIGKILL)
    t.wait_workers(1, exclude=(worker,))
    assert wait_for(lambda: f"worker process {worker}" in t.error_log(), 3), t.error_log()
    with open(log + ".1") as f:
        assert f"worker process {worker}" not in f.read()


def test_s_quit_exits_0_and_removes_the_pid_file(tollgate_factory):
    t = tollgate_factory(server_block(BODY), workers=2).start()
    pid_file = t.path("logs", "tollgate.pid")
    assert os.path.exists(pid_file)
    r = signal_cmd(t, "quit")
    assert r.returncode == 0, r.stderr
    assert t.wait_exit(5) == 0
    assert not os.path.exists(pid_file)
    assert "gracefully shutting down" in t.error_log()


def test_s_stop_exits_promptly(tollgate_factory):
    t = tollgate_factory(server_block(BODY), workers=2).start()
    workers = t.wait_workers(2)
    # An idle keepalive connection must not delay a fast stop.
    s = socket.create_connection(("127.0.0.1", t.port), timeout=3)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    r = signal_cmd(t, "stop")
    assert r.returncode == 0, r.stderr
    assert t.wait_exit(5) == 0
    elapsed = time.monotonic() - started
    s.close()
    assert elapsed < 2.0, f"stop took {elapsed:.2f}s"
    assert not os.path.exists(t.path("logs", "tollgate.pid"))
    for w in workers:
        assert not os.path.exists(f"/proc/{w}") or open(f"/proc/{w}/stat").read().split()[2] == "Z"


def test_s_without_a_running_master_fails_clearly(tollgate_factory):
    t = tollgate_factory(server_block(BODY))
    r = signal_cmd(t, "reload")
    assert r.returncode == 1
    # nginx: [error] open() "PID FILE" failed (2: No such file or directory) -- it says why.
    assert r.stderr.startswith("tollgate: [error]"), r.stderr
    pid_file = t.path("logs", "tollgate.pid")
    assert f'"{pid_file}"' in r.stderr and "No such file or directory" in r.stderr, r.stderr


def test_s_with_an_empty_pid_file_fails_clearly(tollgate_factory):
    t = tollgate_factory(server_block(BODY))
    pid_file = t.path("logs", "tollgate.pid")
    open(pid_file, "w").close()
    r = signal_cmd(t, "reload")
    assert r.returncode == 1
    assert f'invalid PID number "" in "{pid_file}"' in r.stderr or f'invalid PID number in "{pid_file}"' in r.stderr, r.stderr


def test_s_with_a_stale_pid_file_fails_clearly(tollgate_factory):
    t = tollgate_factory(server_block(BODY))
    p = subprocess.Popen(["true"])
    p.wait()  # its pid is now free
    with open(t.path("logs", "tollgate.pid"), "w") as f:
        f.write(f"{p.pid}\n")
    r = signal_cmd(t, "quit")
    assert r.returncode == 1
    assert f"kill({p.pid}, {int(signal.SIGQUIT)}) failed (No such process)" in r.stderr, r.stderr


def test_s_with_an_unknown_signal_name(tollgate_factory):
    t = tollgate_factory(server_block(BODY)).start()
    r = signal_cmd(t, "restart")
    assert r.returncode == 1
    assert 'invalid option: "-s restart"' in r.stderr
    assert t.proc.poll() is None
