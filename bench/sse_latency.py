#!/usr/bin/python3
"""SSE latency through a proxy: tollgate and nginx side by side, same topology.

One python SSE upstream (tests/integration/upstreams.py: each event carries the upstream's
time.monotonic_ns() at send) sends EVENTS events EVERY ms apart. Each proxy (one worker, access
log off) proxies it; the client reads the stream and computes, per event, receive time minus send
time (same host, same monotonic clock). Prints p50/p99/max per proxy and the ratios to nginx.

    bench/sse_latency.py TOLLGATE_BIN [EVENTS] [ROUNDS]
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from upstreams import SSEUpstream  # noqa: E402

INTERVAL_MS = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def measure(port, events):
    """Reads one SSE stream of `events` events; returns latencies in ms (bounded: 60 s)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(
        f"GET /events?n={events}&interval_ms={INTERVAL_MS} HTTP/1.1\r\nHost: b\r\n\r\n".encode()
    )
    buf = b""
    lat = []
    deadline = time.monotonic() + 60
    while len(lat) < events and time.monotonic() < deadline:
        data = s.recv(65536)
        if not data:
            break
        now = time.monotonic_ns()
        buf += data
        for m in re.finditer(rb"data: (\d+)\n\n", buf):
            lat.append((now - int(m.group(1))) / 1e6)
        k = buf.rfind(b"\n\n")
        if k >= 0:
            buf = buf[k + 2 :]
    s.close()
    return lat


def main():
    binary = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    work = tempfile.mkdtemp(prefix="tollgate-sse.")
    up = SSEUpstream(events=events, interval=INTERVAL_MS / 1000)
    procs = []
    try:
        tg_port, ng_port = free_port(), free_port()
        os.makedirs(f"{work}/tg/logs")
        os.makedirs(f"{work}/ng/logs")
        with open(f"{work}/tg/tollgate.conf", "w") as f:
            f.write(
                f"""worker_processes 1; daemon off; pid logs/tollgate.pid; error_log logs/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{tg_port};
    location / {{ proxy_pass http://127.0.0.1:{up.port}; proxy_buffering off; }} }} }}
"""
            )
        with open(f"{work}/ng/nginx.conf", "w") as f:
            f.write(
                f"""worker_processes 1; daemon off; pid {work}/ng/nginx.pid; error_log {work}/ng/logs/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{ng_port};
    location / {{ proxy_pass http://127.0.0.1:{up.port}; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; }} }} }}
"""
            )
        procs.append(subprocess.Popen([binary, "-p", f"{work}/tg/", "-c", "tollgate.conf"]))
        procs.append(
            subprocess.Popen(["nginx", "-p", f"{work}/ng/", "-c", f"{work}/ng/nginx.conf"],
                             stderr=subprocess.DEVNULL)
        )
        wait_port(tg_port, time.monotonic() + 10)
        wait_port(ng_port, time.monotonic() + 10)
        results = {"tollgate": [], "nginx": []}
        for r in range(rounds):
            for name, port in (("tollgate", tg_port), ("nginx", ng_port)):
                lat = sorted(measure(port, events))
                if len(lat) != events:
                    raise SystemExit(f"{name}: {len(lat)} of {events} events arrived")
                p50 = statistics.median(lat)
                p99 = lat[int(len(lat) * 0.99) - 1]
                results[name].append((p50, p99, lat[-1]))
                print(f"round {r + 1}  {name:8s}  p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {lat[-1]:.3f} ms")
        print(f"\n=== SSE latency, {events} events {INTERVAL_MS} ms apart, medians over {rounds} rounds ===")
        med = {n: [statistics.median(x[i] for x in v) for i in range(3)] for n, v in results.items()}
        for n, (p50, p99, mx) in med.items():
            print(f"{n:8s}  p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {mx:.3f} ms  "
                  f"p99÷nginx {p99 / med['nginx'][1]:.2f}")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        up.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
