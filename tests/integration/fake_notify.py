"""A stand-in for systemd's notification socket (sd_notify(3)).

Binds a unix datagram socket at a temporary path; give `env()` to the process under test (it sets
NOTIFY_SOCKET) and read what it announced with `wait_for()` / `messages`.
"""
import os
import socket
import tempfile
import threading
import time


class FakeNotify:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tollgate-notify-")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.sock.settimeout(0.05)
        self.messages = []  # each a dict of KEY=VALUE from one datagram, in arrival order
        self.raw = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode(errors="replace")
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            with self._lock:
                self.raw.append(text)
                self.messages.append(fields)

    def env(self, base=None):
        e = dict(os.environ if base is None else base)
        e["NOTIFY_SOCKET"] = self.path
        return e

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def wait_for(self, key, value, start=0, timeout=5.0):
        """Waits for a message at index >= start with key=value; returns its index or raises."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.snapshot()
            for i in range(start, len(msgs)):
                if msgs[i].get(key) == value:
                    return i
            time.sleep(0.01)
        raise AssertionError(f"no {key}={value} after message {start} within {timeout}s; got {self.raw}")

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass
