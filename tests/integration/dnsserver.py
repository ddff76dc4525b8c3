"""A small authoritative DNS server over UDP for the resolver tests (stdlib only, 127.0.0.1).

    dns = DnsServer({"svc.test": ["127.0.0.1"]}, ttl=30)
    ... resolver 127.0.0.1:{dns.port} ...
    dns.queries["svc.test"]      # questions received for that name (any type)
    dns.set("svc.test", ["127.0.0.2"], ttl=5)
    dns.stop()

Behaviour (RFC 1035 wire format):
* A query for a known name: NOERROR, AA, one A RR per IPv4 address (the owner name is the
  compression pointer 0xC00C to the echoed question), the name's TTL.
* AAAA for a known name: one AAAA RR per IPv6 address; none given -> NOERROR with no answer
  (NODATA). Any other type for a known name: NODATA as well.
* An unknown name: NXDOMAIN (rcode 3), no answer.
* Names match case-insensitively, with or without the trailing dot; the question is echoed
  byte for byte (so 0x20 case randomisation survives). EDNS OPT records in the query are ignored.
* Malformed queries get FORMERR when a header could be read, and are dropped otherwise.
* `respond = False` makes the server count queries but never answer (a dead resolver);
  `delay` (seconds) holds every answer back that long (a slow resolver; the loop stays bounded).

Everything runs in one daemon thread polling a socket with a 50 ms timeout; stop() ends it.
"""
import collections
import heapq
import ipaddress
import socket
import struct
import threading
import time

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_AAAA = 28
TYPE_OPT = 41
CLASS_IN = 1
TYPE_NAMES = {TYPE_A: "A", TYPE_NS: "NS", TYPE_CNAME: "CNAME", TYPE_SOA: "SOA", TYPE_AAAA: "AAAA", TYPE_OPT: "OPT"}

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4

MAX_PENDING = 10_000  # delayed answers kept at most
MAX_LOG = 10_000


def normalize(name):
    """The lookup key of a DNS name: lowercase ASCII, no trailing dot."""
    if isinstance(name, bytes):
        name = name.decode("ascii")
    return name.rstrip(".").lower()


def encode_name(name):
    """A name in uncompressed wire form (labels + zero octet)."""
    out = bytearray()
    for label in normalize(name).split(".") if normalize(name) else []:
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def read_name(msg, off, max_jumps=16):
    """Decodes a (possibly compressed) name at `off`; returns (dotted name, offset after it)."""
    labels = []
    end = None
    for _ in range(max_jumps + 128):
        if off >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise ValueError("truncated pointer")
            if end is None:
                end = off + 2
            max_jumps -= 1
            if max_jumps < 0:
                raise ValueError("pointer loop")
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n & 0xC0:
            raise ValueError("bad label type")
        if off + 1 + n > len(msg):
            raise ValueError("label runs past the message")
        labels.append(bytes(msg[off + 1 : off + 1 + n]).decode("latin-1"))
        off += 1 + n
    else:
        raise ValueError("name too long")
    return ".".join(labels), (end if end is not None else off)


def build_query(name, qtype=TYPE_A, qid=0x1234, rd=True, edns=False):
    """A query message (used by the self-checks and handy for raw clients)."""
    flags = 0x0100 if rd else 0
    q = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    raw = bytearray()
    for label in name.rstrip(".").split(".") if name.rstrip(".") else []:
        raw += bytes([len(label)]) + label.encode("ascii")
    q += bytes(raw) + b"\x00" + struct.pack("!HH", qtype, CLASS_IN)
    if edns:
        q += b"\x00" + struct.pack("!HHIH", TYPE_OPT, 1232, 0, 0)
    return q


def parse_message(msg):
    """Decodes a DNS message into a dict: id, flags fields, questions and answers (for clients)."""
    if len(msg) < 12:
        raise ValueError("short message")
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    out = {
        "id": qid,
        "qr": flags >> 15,
        "opcode": (flags >> 11) & 0xF,
        "aa": (flags >> 10) & 1,
        "tc": (flags >> 9) & 1,
        "rd": (flags >> 8) & 1,
        "ra": (flags >> 7) & 1,
        "rcode": flags & 0xF,
        "counts": (qd, an, ns, ar),
        "questions": [],
        "answers": [],
        "answer_offsets": [],
    }
    off = 12
    for _ in range(qd):
        name, off = read_name(msg, off)
        qtype, qclass = struct.unpack("!HH", msg[off : off + 4])
        off += 4
        out["questions"].append((name, qtype, qclass))
    for _ in range(an + ns + ar):
        start = off
        name, off = read_name(msg, off)
        if off + 10 > len(msg):
            raise ValueError("truncated RR")
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off : off + 10])
        off += 10
        rdata = bytes(msg[off : off + rdlen])
        if len(rdata) != rdlen:
            raise ValueError("truncated RDATA")
        off += rdlen
        if rtype == TYPE_A and rdlen == 4:
            value = str(ipaddress.IPv4Address(rdata))
        elif rtype == TYPE_AAAA and rdlen == 16:
            value = str(ipaddress.IPv6Address(rdata))
        else:
            value = rdata
        if len(out["answers"]) < an:
            out["answers"].append({"name": name, "type": rtype, "class": rclass, "ttl": ttl, "value": value})
            out["answer_offsets"].append(start)
    if off != len(msg):
        raise ValueError(f"{len(msg) - off} trailing bytes")
    return out


def query(port, name, qtype=TYPE_A, timeout=2.0, qid=0x4242, edns=False, host="127.0.0.1"):
    """Sends one query and returns (raw response bytes, parsed dict); raw is None on timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(build_query(name, qtype, qid, edns=edns), (host, port))
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            return None, None
        return data, parse_message(data)


class DnsServer:
    """Authoritative UDP DNS server on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, records=None, ttl=60, host="127.0.0.1", respond=True, delay=0.0):
        self.lock = threading.Lock()
        self._records = {}  # key -> (ipv4 list, ipv6 list, ttl)
        self.ttl = ttl
        for name, addrs in (records or {}).items():
            self.set(name, addrs, ttl)
        self.queries = collections.Counter()  # normalized name -> questions received (any type)
        self.queries_by_type = collections.Counter()  # (normalized name, "A"/"AAAA"/...) -> count
        self.log = collections.deque(maxlen=MAX_LOG)  # (time.monotonic(), name, type name, query id)
        self.errors = []  # malformed datagrams seen
        self.respond = respond
        self.delay = delay
        self.answered = 0
        self._pending = []  # heap of (due, seq, data, addr)
        self._seq = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="DnsServer")
        self._thread.start()

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    # ---- records ----

    def set(self, name, addresses, ttl=None):
        """Replaces the answers for `name` (a list of IPv4/IPv6 address strings, may be empty)."""
        v4, v6 = [], []
        for a in addresses:
            ip = ipaddress.ip_address(a)
            (v4 if ip.version == 4 else v6).append(ip.packed)
        with self.lock:
            self._records[normalize(name)] = (v4, v6, self.ttl if ttl is None else int(ttl))

    def remove(self, name):
        """Makes `name` unknown (NXDOMAIN) from now on."""
        with self.lock:
            self._records.pop(normalize(name), None)

    def total_queries(self):
        with self.lock:
            return sum(self.queries.values())

    def count(self, name, qtype=None):
        """Questions received for `name` (of `qtype` "A"/"AAAA" when given)."""
        with self.lock:
            if qtype is None:
                return self.queries[normalize(name)]
            return self.queries_by_type[(normalize(name), qtype)]

    # ---- protocol ----

    def answer(self, msg):
        """The response bytes for the query `msg`, or None to drop it."""
        if len(msg) < 12:
            return None
        qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
        if flags & 0x8000:  # a response: never answer it
            return None
        opcode = (flags >> 11) & 0xF
        rd = flags & 0x0100

        def header(rcode, qdcount, ancount):
            f = 0x8000 | (opcode << 11) | 0x0400 | rd | rcode  # QR, AA, RD copied
            return struct.pack("!HHHHHH", qid, f, qdcount, ancount, 0, 0)

        if opcode != 0:
            return header(RCODE_NOTIMP, 0, 0)
        if qd != 1:
            return header(RCODE_FORMERR, 0, 0)
        try:
            qname, off = read_name(msg, 12)
            if off + 4 > len(msg):
                raise ValueError("truncated question")
            qtype, qclass = struct.unpack("!HH", msg[off : off + 4])
        except ValueError as e:
            self.errors.append(str(e))
            return header(RCODE_FORMERR, 0, 0)
        question = bytes(msg[12 : off + 4])  # echoed byte for byte (case preserved)
        key = normalize(qname)
        with self.lock:
            self.queries[key] += 1
            self.queries_by_type[(key, TYPE_NAMES.get(qtype, str(qtype)))] += 1
            self.log.append((time.monotonic(), key, TYPE_NAMES.get(qtype, str(qtype)), qid))
            rec = self._records.get(key)
        if rec is None:
            return header(RCODE_NXDOMAIN, 1, 0) + question
        v4, v6, ttl = rec
        if qclass != CLASS_IN:
            addrs, rtype = [], qtype
        elif qtype == TYPE_A:
            addrs, rtype = v4, TYPE_A
        elif qtype == TYPE_AAAA:
            addrs, rtype = v6, TYPE_AAAA
        else:
            addrs, rtype = [], qtype
        rrs = b"".join(struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(a)) + a for a in addrs)
        return header(RCODE_NOERROR, 1, len(addrs)) + question + rrs

    # ---- loop ----

    def _run(self):
        while not self.stopping.is_set():
            self._flush_pending()
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                resp = self.answer(data)
            except Exception as e:  # never let one bad datagram end the server
                self.errors.append(repr(e))
                continue
            if resp is None or not self.respond:
                continue
            if self.delay > 0:
                if len(self._pending) < MAX_PENDING:
                    self._seq += 1
                    heapq.heappush(self._pending, (time.monotonic() + self.delay, self._seq, resp, addr))
                continue
            self._send(resp, addr)

    def _flush_pending(self):
        now = time.monotonic()
        for _ in range(len(self._pending)):
            if not self._pending or self._pending[0][0] > now:
                return
            _, _, resp, addr = heapq.heappop(self._pending)
            self._send(resp, addr)

    def _send(self, resp, addr):
        try:
            self.sock.sendto(resp, addr)
            with self.lock:
                self.answered += 1
        except OSError:
            pass

    def stop(self):
        self.stopping.set()
        self._thread.join(timeout=5)
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
