#!/usr/bin/env python3
"""Idle keepalive connections against one server, and the worker's memory per connection.

    idle_conns.py PORT WORKER_PID [N] [BATCH] [TIMEOUT_S]

Samples the worker's VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) with no client
connection open, then opens N connections in batches of BATCH (non-blocking connect, selectors),
sends one `GET / HTTP/1.1` on each and reads the whole response (Content-Length framed), keeps
them all open and idle, and samples again (after a short settle). Then closes them and samples
once more. Prints one line "RESULT key=value ..." for the calling script, after readable lines.
Gives up (exit 1) if the N connections are not all established and answered within TIMEOUT_S.
"""
import errno
import re
import selectors
import socket
import sys
import time

port = int(sys.argv[1])
pid = int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
BATCH = int(sys.argv[4]) if len(sys.argv) > 4 else 500
TIMEOUT = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
REQ = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: idle_conns\r\n\r\n"


def mem():
    """(VmRSS kB, Pss kB or None) of the worker."""
    rss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def settle_sample(seconds=2.0, every=0.25):
    """Samples for `seconds` and returns the last (the worker is idle: values are stable)."""
    end = time.monotonic() + seconds
    last = mem()
    while time.monotonic() < end:
        time.sleep(every)
        last = mem()
    return last


class Conn:
    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"
        self.buf = b""
        self.need = None  # total bytes of the response, once the head is parsed


def main():
    # Warm the worker up (lazy initialisation, first-request allocations) with a few short
    # connections, so that the baseline is a worker that has already served requests.
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(REQ.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            while s.recv(65536):
                pass
    base_rss, base_pss = settle_sample()
    print(f"  0 connections: VmRSS {base_rss} kB, Pss {base_pss} kB", flush=True)

    sel = selectors.DefaultSelector()
    conns = []
    done = 0
    failed = 0
    start = time.monotonic()
    deadline = start + TIMEOUT
    head_re = re.compile(rb"\r\n\r\n")
    cl_re = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)

    def open_batch(k):
        for _ in range(k):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
            c = Conn(s)
            conns.append(c)
            sel.register(s, selectors.EVENT_WRITE, c)

    while done < N:
        if time.monotonic() > deadline:
            print(f"  timed out after {TIMEOUT:.0f} s: {done}/{N} answered, {failed} failed",
                  file=sys.stderr)
            sys.exit(1)
        in_flight = len(conns) - done - failed
        if len(conns) < N and in_flight < BATCH:
            open_batch(min(BATCH - in_flight, N - len(conns)))
        for key, ev in sel.select(timeout=0.5):
            c = key.data
            s = c.sock
            if c.state == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, f"connect: {errno.errorcode.get(err, err)} "
                                       f"after {len(conns)} opened")
                s.send(REQ)  # tiny: fits the empty send buffer in one go
                c.state = "reading"
                sel.modify(s, selectors.EVENT_READ, c)
            elif c.state == "reading":
                data = s.recv(65536)
                if not data:
                    raise OSError(f"server closed a connection before answering "
                                  f"({done} answered)")
                c.buf += data
                if c.need is None:
                    m = head_re.search(c.buf)
                    if m:
                        if not c.buf.startswith(b"HTTP/1.1 200"):
                            raise OSError(f"unexpected response: {c.buf[:40]!r}")
                        cl = cl_re.search(c.buf, 0, m.end())
                        c.need = m.end() + (int(cl.group(1)) if cl else 0)
                if c.need is not None and len(c.buf) >= c.need:
                    c.state = "idle"
                    c.buf = b""
                    sel.unregister(s)  # held open, never read again while idle
                    done += 1
    opened_s = time.monotonic() - start
    print(f"  {N} connections open and answered in {opened_s:.1f} s", flush=True)

    # Hold them idle and sample. Check nobody was closed by the server meanwhile.
    rss, pss = settle_sample(3.0)
    closed = 0
    for c in conns:
        try:
            if c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                closed += 1
        except BlockingIOError:
            pass
    print(f"  {N} connections: VmRSS {rss} kB, Pss {pss} kB ({closed} closed by the server)",
          flush=True)

    for c in conns:
        c.sock.close()
    after_rss, after_pss = settle_sample(2.0)
    print(f"  after closing: VmRSS {after_rss} kB, Pss {after_pss} kB", flush=True)

    per_rss = (rss - base_rss) * 1024 / N
    per_pss = (pss - base_pss) * 1024 / N if pss is not None and base_pss is not None else -1
    print(f"RESULT n={N} base_rss_kb={base_rss} rss_kb={rss} base_pss_kb={base_pss} "
          f"pss_kb={pss} after_rss_kb={after_rss} per_conn_rss_b={per_rss:.0f} "
          f"per_conn_pss_b={per_pss:.0f} closed={closed} open_s={opened_s:.1f}")


if __name__ == "__main__":
    main()
