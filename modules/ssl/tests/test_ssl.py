"""TLS termination (modules/ssl) with certificates made by the real `openssl` CLI, driven by real
curl, `openssl s_client` and Python's ssl module.

Covered: TLS 1.2 and 1.3 handshakes and the $ssl_* variables; TLS 1.0/1.1 refused by default;
SNI over three names and the default-server fallback; RSA and ECDSA certificates side by side;
mTLS (valid, missing, wrong CA, expired, revoked by CRL) per ssl_verify_client mode, with the
client DN forwarded to a real upstream; session resumption across two workers through session
tickets and through the shared session cache; a certificate swap with a reload under a bounded
load; a garbage ClientHello, plain HTTP to the TLS port and a stalled handshake, each closed
cleanly while other connections keep working; bad certificates and keys failing `tollgate -t`
and a reload with file:line and the OpenSSL reason; static files (sendfile path) over TLS;
an HTTP to HTTPS redirect.
"""
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from certs import Pki
from harness import BINARY


def compiled_modules():
    try:
        out = subprocess.run([BINARY, "-V"], capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout + out.stderr


pytestmark = pytest.mark.skipif(
    not re.search(r"\bssl\b", compiled_modules().split("modules:")[-1]),
    reason="the ssl module is not compiled in",
)
from upstreams import EchoUpstream, wait_until

# ---- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki():
    root = tempfile.mkdtemp(prefix="tollgate-pki-")
    os.chmod(root, 0o755)
    ca = Pki(os.path.join(root, "ca"), "Test CA")
    other = Pki(os.path.join(root, "other"), "Other CA")
    os.chmod(ca.dir, 0o755)
    os.chmod(other.dir, 0o755)
    certs = {"ca": ca, "other": other}
    for name in ("a.test", "b.test", "c.test", "default.test"):
        certs[name] = ca.issue(name, name, sans=[name])
    certs["ec"] = ca.issue("ec", "a.test", key="ec", sans=["a.test"])
    certs["new"] = ca.issue("new", "a.test", sans=["a.test"], org="Renewed")
    certs["client"] = ca.issue("client", "alice", kind="client", org="Acme")
    certs["client_other"] = other.issue("client_other", "mallory", kind="client")
    certs["client_expired"] = ca.issue(
        "client_expired", "old", kind="client", start="20200101000000Z", end="20210101000000Z"
    )
    certs["client_revoked"] = ca.issue("client_revoked", "revoked", kind="client")
    ca.revoke(certs["client_revoked"][0])
    certs["crl"] = ca.crl()
    yield certs


def cert_lines(crt, key):
    return "ssl_certificate %s;\n ssl_certificate_key %s;\n" % (crt, key)


def tls_block(pki, body="return 200 \"$ssl_protocol $ssl_cipher $scheme $https\\n\";", extra=""):
    crt, key = pki["a.test"]
    return (
        "http {\n include mime.types;\n server {\n listen 127.0.0.1:{port} ssl;\n"
        " server_name a.test;\n%s%s\n location / { %s }\n }\n}\n" % (cert_lines(crt, key), extra, body)
    )


def s_client(port, *args, data=b"", timeout=15):
    """Runs `openssl s_client`; returns (exit code, stdout+stderr text)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-ign_eof", *args]
    r = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def http_get(host="a.test"):
    return ("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode()


def subject_cn(text):
    m = re.search(r"subject=.*?CN ?= ?([^,\n/]+)", text)
    return m.group(1).strip() if m else None


def curl(port, path="/", *args, host="a.test", cafile=None):
    cmd = ["curl", "-sS", "--max-time", "10", "--resolve", "%s:%d:127.0.0.1" % (host, port)]
    cmd += ["--cacert", cafile] if cafile else ["-k"]
    cmd += [*args, "https://%s:%d%s" % (host, port, path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


def tls_context(ca=None, client=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client:
        ctx.load_cert_chain(*client)
    return ctx


def https_request(port, ctx, host="a.test", path="/", headers=""):
    """One request on a new TLS connection; returns (status, headers dict, body, peer cert DER)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n" % (path, host, headers)).encode())
            data = b""
            while True:
                try:
                    b = s.recv(65536)
                except (ssl.SSLEOFError, ConnectionResetError):
                    break
                if not b:
                    break
                data += b
            der = s.getpeercert(binary_form=True)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, body, der


# ---- handshakes --------------------------------------------------------------------------------


def test_tls12_and_tls13_with_curl_and_s_client(tollgate_factory, pki):
    t = tollgate_factory(tls_block(pki)).start()
    r = curl(t.port, "/", "--tlsv1.3", cafile=pki["ca"].ca_cert)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("TLSv1.3 TLS_") and r.stdout.endswith(" https on\n")
    r = curl(t.port, "/", "--tlsv1.2", "--tls-max", "1.2", cafile=pki["ca"].ca_cert)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("TLSv1.2 ECDHE-RSA-AES"), r.stdout
    for flag, proto in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        rc, out = s_client(t.port, flag, "-servername", "a.test", "-CAfile", pki["ca"].ca_cert, data=http_get())
        assert rc == 0, out
        assert "Verify return code: 0 (ok)" in out
        assert "HTTP/1.1 200 OK" in out and proto + " " in out


def test_tls10_and_tls11_refused_by_default(tollgate_factory, pki):
    t = tollgate_factory(tls_block(pki)).start()
    for flag in ("-tls1", "-tls1_1"):
        rc, out = s_client(t.port, flag, "-cipher", "DEFAULT@SECLEVEL=0", data=http_get())
        assert rc != 0, out
        assert "HTTP/1.1" not in out
    assert wait_until(lambda: "unsupported protocol" in t.error_log())
    # Still serving.
    assert curl(t.port, "/", cafile=pki["ca"].ca_cert).returncode == 0


def test_ssl_protocols_can_be_narrowed(tollgate_factory, pki):
    t = tollgate_factory(tls_block(pki, extra=" ssl_protocols TLSv1.3;\n")).start()
    rc, out = s_client(t.port, "-tls1_2", data=http_get())
    assert rc != 0 and "HTTP/1.1" not in out
    rc, out = s_client(t.port, "-tls1_3", data=http_get())
    assert rc == 0 and "HTTP/1.1 200" in out


def test_sni_three_names_and_fallback(tollgate_factory, pki):
    servers = ""
    for name in ("a.test", "b.test", "c.test"):
        crt, key = pki[name]
        servers += (
            " server {\n listen 127.0.0.1:{port} ssl;\n server_name %s;\n %s"
            " location / { return 200 \"%s $ssl_server_name\\n\"; }\n }\n" % (name, cert_lines(crt, key), name)
        )
    crt, key = pki["default.test"]
    servers += (
        " server {\n listen 127.0.0.1:{port} ssl default_server;\n server_name default.test;\n %s"
        " location / { return 200 \"default $ssl_server_name\\n\"; }\n }\n" % cert_lines(crt, key)
    )
    t = tollgate_factory("http {\n%s}\n" % servers).start()
    for name in ("a.test", "b.test", "c.test"):
        rc, out = s_client(t.port, "-servername", name, data=http_get(name))
        assert rc == 0, out
        assert subject_cn(out) == name, out
        assert "\r\n\r\n%s %s\n" % (name, name) in out
        r = curl(t.port, "/", host=name, cafile=pki["ca"].ca_cert)
        assert r.returncode == 0 and r.stdout == "%s %s\n" % (name, name), r.stderr
    rc, out = s_client(t.port, "-servername", "unknown.test", data=http_get("unknown.test"))
    assert rc == 0 and subject_cn(out) == "default.test", out
    assert "default unknown.test\n" in out
    rc, out = s_client(t.port, "-noservername", data=http_get("default.test"))
    assert rc == 0 and subject_cn(out) == "default.test", out


def test_rsa_and_ecdsa_certificates_side_by_side(tollgate_factory, pki):
    crt, key = pki["ec"]
    t = tollgate_factory(tls_block(pki, extra=cert_lines(crt, key))).start()
    rc, out = s_client(t.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", data=http_get())
    assert rc == 0 and "Server public key is 256 bit" in out, out
    rc, out = s_client(t.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", data=http_get())
    assert rc == 0 and "Server public key is 2048 bit" in out, out
    rc, out = s_client(t.port, "-tls1_3", "-sigalgs", "ECDSA+SHA256", data=http_get())
    assert rc == 0 and "Server public key is 256 bit" in out, out


# ---- client certificates -----------------------------------------------------------------------


def mtls_block(pki, mode, upstream_port, crl=True):
    crt, key = pki["a.test"]
    return (
        "http {\n server {\n listen 127.0.0.1:{port} ssl;\n server_name a.test;\n %s"
        " ssl_client_certificate %s;\n ssl_verify_client %s;\n ssl_verify_depth 2;\n%s"
        " location / {\n proxy_pass http://127.0.0.1:%d;\n"
        " proxy_set_header X-Client-DN $ssl_client_s_dn;\n"
        " proxy_set_header X-Client-Verify $ssl_client_verify;\n"
        " proxy_set_header X-Client-Serial $ssl_client_serial;\n"
        " proxy_set_header X-Client-Fingerprint $ssl_client_fingerprint;\n }\n }\n}\n"
        % (cert_lines(crt, key), pki["ca"].ca_cert, mode, " ssl_crl %s;\n" % pki["crl"] if crl else "", upstream_port)
    )


def upstream_headers(up):
    return {k.lower(): v for k, v in up.log[-1]["headers"]}


@pytest.fixture
def echo():
    up = EchoUpstream()
    yield up
    up.stop() if hasattr(up, "stop") else up.__exit__(None, None, None)


def test_mtls_on(tollgate_factory, pki, echo):
    t = tollgate_factory(mtls_block(pki, "on", echo.port)).start()
    ca = pki["ca"].ca_cert
    status, _, _, _ = https_request(t.port, tls_context(ca, pki["client"]))
    assert status == 200
    h = upstream_headers(echo)
    assert h["x-client-dn"] == "O=Acme,CN=alice"
    assert h["x-client-verify"] == "SUCCESS"
    assert h["x-client-serial"] == pki["ca"].serial_of(pki["client"][0])
    assert h["x-client-fingerprint"] == pki["ca"].fingerprint_of(pki["client"][0])
    assert h["x-forwarded-proto"] == "https"
    n = len(echo.log)
    for client, message in (
        (None, "No required SSL certificate was sent"),
        (pki["client_other"], "The SSL certificate error"),
        (pki["client_expired"], "The SSL certificate error"),
        (pki["client_revoked"], "The SSL certificate error"),
    ):
        status, hdrs, body, _ = https_request(t.port, tls_context(ca, client))
        assert status == 400, (client, body)
        doc = json.loads(body)
        assert doc["message"] == message and doc["status"] == 400
    assert len(echo.log) == n  # none of them reached the upstream
    log = t.error_log()
    assert "certificate has expired" in log and "certificate revoked" in log


def test_mtls_optional_and_optional_no_ca(tollgate_factory, pki, echo):
    ca = pki["ca"].ca_cert
    t = tollgate_factory(mtls_block(pki, "optional", echo.port)).start()
    status, _, _, _ = https_request(t.port, tls_context(ca))
    assert status == 200 and upstream_headers(echo)["x-client-verify"] == "NONE"
    status, _, _, _ = https_request(t.port, tls_context(ca, pki["client_other"]))
    assert status == 400
    t.cleanup()
    t = tollgate_factory(mtls_block(pki, "optional_no_ca", echo.port)).start()
    status, _, _, _ = https_request(t.port, tls_context(ca, pki["client_other"]))
    assert status == 200
    h = upstream_headers(echo)
    assert h["x-client-verify"].startswith("FAILED:") and h["x-client-dn"] == "CN=mallory"
    status, _, _, _ = https_request(t.port, tls_context(ca, pki["client_expired"]))
    assert status == 400  # optional_no_ca tolerates an unknown CA, not an expired certificate
    status, _, _, _ = https_request(t.port, tls_context(ca, pki["client"]))
    assert status == 200 and upstream_headers(echo)["x-client-verify"] == "SUCCESS"


# ---- session resumption ------------------------------------------------------------------------


def resume_on_other_worker(t, flags, tries=40):
    """Makes a session on one worker, then resumes it until a handshake lands on the other one.
    Returns the set of worker pids that resumed it."""
    d = tempfile.mkdtemp(prefix="tollgate-sess-")
    sess = os.path.join(d, "sess.pem")
    rc, out = s_client(t.port, *flags, "-sess_out", sess, data=http_get())
    assert rc == 0 and "HTTP/1.1 200" in out, out
    first = re.search(r"pid=(\d+)", out).group(1)
    resumed_on = set()
    for _ in range(tries):
        rc, out = s_client(t.port, *flags, "-sess_in", sess, data=http_get())
        assert rc == 0 and "HTTP/1.1 200" in out, out
        pid = re.search(r"pid=(\d+)", out).group(1)
        if "Reused," in out:
            resumed_on.add(pid)
        if pid != first and pid in resumed_on:
            break
    return first, resumed_on


TWO_WORKERS_BODY = "return 200 \"pid=$pid reused=$ssl_session_reused\\n\";"


@pytest.mark.parametrize("flags", [("-tls1_2",), ("-tls1_3",)])
def test_resumption_with_tickets_across_workers(tollgate_factory, pki, flags):
    t = tollgate_factory(tls_block(pki, TWO_WORKERS_BODY, " ssl_session_cache off;\n"), workers=2).start()
    t.wait_workers(2)
    first, resumed_on = resume_on_other_worker(t, flags)
    assert resumed_on - {first}, "never resumed on the other worker: %s" % resumed_on


@pytest.mark.parametrize("flags", [("-tls1_2",), ("-tls1_3",)])
def test_resumption_with_shared_cache_across_workers(tollgate_factory, pki, flags):
    extra = " ssl_session_tickets off;\n ssl_session_cache shared:SSL:1m;\n"
    t = tollgate_factory(tls_block(pki, TWO_WORKERS_BODY, extra), workers=2).start()
    t.wait_workers(2)
    first, resumed_on = resume_on_other_worker(t, flags)
    assert resumed_on - {first}, "never resumed on the other worker: %s" % resumed_on


def test_ticket_key_files_and_bad_key_file(tollgate_factory, pki):
    d = tempfile.mkdtemp(prefix="tollgate-tk-")
    good = os.path.join(d, "good.key")
    with open(good, "wb") as f:
        f.write(os.urandom(80))
    bad = os.path.join(d, "bad.key")
    with open(bad, "wb") as f:
        f.write(os.urandom(47))
    t = tollgate_factory(tls_block(pki, TWO_WORKERS_BODY, " ssl_session_cache off;\n ssl_session_ticket_key %s;\n" % good))
    t.start()
    sess = os.path.join(d, "sess.pem")
    rc, out = s_client(t.port, "-tls1_3", "-sess_out", sess, data=http_get())
    assert rc == 0
    # A second instance with the same key file resumes the first one's session.
    t2 = tollgate_factory(tls_block(pki, TWO_WORKERS_BODY, " ssl_session_cache off;\n ssl_session_ticket_key %s;\n" % good))
    t2.start()
    rc, out = s_client(t2.port, "-tls1_3", "-sess_in", sess, data=http_get())
    assert rc == 0 and "Reused," in out and "reused=r" in out, out
    t3 = tollgate_factory(tls_block(pki, extra=" ssl_session_ticket_key %s;\n" % bad))
    rc, err = t3.test_config()
    assert rc == 1
    assert re.search(r"tollgate\.conf:\d+: ssl_session_ticket_key \".*bad.key\" must be 48 or 80 bytes", err), err


# ---- reload ------------------------------------------------------------------------------------


def test_certificate_swap_with_reload_under_load_drops_nothing(tollgate_factory, pki):
    d = tempfile.mkdtemp(prefix="tollgate-swap-")
    os.chmod(d, 0o755)
    crt, key = os.path.join(d, "site.crt"), os.path.join(d, "site.key")
    for src, dst in zip(pki["a.test"], (crt, key)):
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    block = (
        "http {\n server {\n listen 127.0.0.1:{port} ssl;\n server_name a.test;\n %s"
        " location / { return 200 \"ok\\n\"; }\n }\n}\n" % cert_lines(crt, key)
    )
    t = tollgate_factory(block, workers=2).start()
    old_workers = t.wait_workers(2)
    ca = pki["ca"].ca_cert
    ctx = tls_context(ca)
    results = {"ok": 0, "fail": []}
    stop = threading.Event()

    def load():
        deadline = time.monotonic() + 30
        n = 0
        while not stop.is_set() and time.monotonic() < deadline and n < 3000:
            n += 1
            try:
                status, _, body, _ = https_request(t.port, ctx)
                if status == 200 and body == b"ok\n":
                    results["ok"] += 1
                else:
                    results["fail"].append((status, body))
            except Exception as e:  # noqa: BLE001 - any failure is a dropped request
                results["fail"].append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for th in threads:
        th.start()
    time.sleep(0.5)
    for src, dst in zip(pki["new"], (crt, key)):
        with open(src, "rb") as f, open(dst + ".tmp", "wb") as g:
            g.write(f.read())
        os.replace(dst + ".tmp", dst)
    t.reload()
    t.wait_workers(2, exclude=old_workers, timeout=15)
    time.sleep(0.5)
    stop.set()
    for th in threads:
        th.join(timeout=40)
    assert results["fail"] == [], results["fail"][:5]
    assert results["ok"] > 10
    rc, out = s_client(t.port, "-servername", "a.test", data=http_get())
    assert rc == 0 and "O = Renewed" in out, out


def test_bad_certificate_fails_test_and_reload_keeps_serving(tollgate_factory, pki):
    d = tempfile.mkdtemp(prefix="tollgate-bad-")
    os.chmod(d, 0o755)
    garbage = os.path.join(d, "garbage.crt")
    with open(garbage, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    crt, key = pki["a.test"]
    other_key = pki["b.test"][1]
    cases = [
        ("ssl_certificate %s;\n ssl_certificate_key %s;\n" % (garbage, key), r":4: cannot load certificate \".*garbage.crt\": error:"),
        ("ssl_certificate %s/missing.crt;\n ssl_certificate_key %s;\n" % (d, key), r":4: cannot load certificate \".*missing.crt\": error:.*(?i:no such file|system lib)"),
        ("ssl_certificate %s;\n ssl_certificate_key %s;\n" % (crt, other_key), r":5: cannot load certificate key \".*b.test.key\": error:.*key values mismatch"),
        ("ssl_certificate %s;\n ssl_certificate_key %s;\n ssl_ciphers NOPE-NOTHING;\n" % (crt, key), r":6: SSL_CTX_set_cipher_list\(\"NOPE-NOTHING\"\) failed"),
        ("ssl_certificate %s;\n ssl_certificate_key %s;\n ssl_conf_command Nonsense yes;\n" % (crt, key), r":6: SSL_CONF_cmd\(\"Nonsense\", \"yes\"\) failed"),
        ("", r":3: no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive"),
    ]
    good = tls_block(pki)
    for lines, pattern in cases:
        block = (
            "http {\n server {\n listen 127.0.0.1:{port} ssl;\n %s"
            " location / { return 200; }\n }\n}\n" % lines
        )
        # The harness puts 6 lines before the http block.
        t = tollgate_factory(block)
        rc, err = t.test_config()
        assert rc == 1, err
        m = re.search(r"tollgate\.conf(:\d+):", err)
        assert m, err
        line = int(m.group(1)[1:]) - 6
        assert re.search(pattern.replace(r":%d" % 0, ""), ":%d" % line + err[m.end() - 1 :]), err
    # A reload with a bad certificate keeps the running generation serving.
    t = tollgate_factory(good).start()
    pids = t.wait_workers(1)
    t.write_config(good.replace(pki["a.test"][0], garbage))
    t.reload()
    assert wait_until(lambda: "cannot load certificate" in t.error_log())
    assert t.worker_pids() == pids
    assert curl(t.port, "/", cafile=pki["ca"].ca_cert).returncode == 0


# ---- hostile and broken clients ---------------------------------------------------------------


def test_garbage_plain_http_and_stalled_handshakes_are_closed(tollgate_factory, pki):
    t = tollgate_factory(tls_block(pki, extra=" ssl_handshake_timeout 1s;\n")).start()
    ca = pki["ca"].ca_cert
    # A stalled handshake: connect and say nothing (another sends half a record).
    stalled = socket.create_connection(("127.0.0.1", t.port), timeout=10)
    half = socket.create_connection(("127.0.0.1", t.port), timeout=10)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    # Garbage that is not TLS.
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        s.sendall(os.urandom(64) + b"\x16\x03\x01\x00\x05hello")
        s.settimeout(5)
        data = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"HTTP" not in data
    # Plain HTTP on the TLS port gets a plain 400.
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        s.settimeout(5)
        data = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        except (ConnectionResetError, socket.timeout):
            pass
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
        assert b"plain HTTP request was sent to HTTPS port" in data
    # Others are served meanwhile.
    for _ in range(5):
        assert curl(t.port, "/", cafile=ca).returncode == 0
    # The stalled handshakes are closed by ssl_handshake_timeout.
    for s in (stalled, half):
        s.settimeout(10)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        s.close()
    assert "SSL handshake timed out" in t.error_log()
    assert curl(t.port, "/", cafile=ca).returncode == 0


# ---- content over TLS --------------------------------------------------------------------------


def test_static_file_and_keepalive_over_tls(tollgate_factory, pki):
    crt, key = pki["a.test"]
    block = (
        "http {\n include mime.types;\n server {\n listen 127.0.0.1:{port} ssl;\n server_name a.test;\n %s"
        " root {prefix}/html;\n }\n}\n" % cert_lines(crt, key)
    )
    t = tollgate_factory(block)
    os.makedirs(t.path("html"))
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with open(t.path("html", "big.bin"), "wb") as f:
        f.write(payload)
    with open(t.path("html", "small.txt"), "w") as f:
        f.write("small\n")
    os.chmod(t.path("html"), 0o755)
    t.start()
    out = t.path("got.bin")
    r = curl(t.port, "/big.bin", "-o", out, cafile=pki["ca"].ca_cert)
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(payload).digest()
    # Several requests on one connection (keepalive), including the big one.
    r = curl(t.port, "/small.txt", "-o", "/dev/null", "-w", "%{num_connects}\\n",
             "https://a.test:%d/big.bin" % t.port, "https://a.test:%d/small.txt" % t.port,
             "-o", "/dev/null", "-o", "/dev/null", cafile=pki["ca"].ca_cert)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "0", "0"], r.stdout


def test_http_to_https_redirect(tollgate_factory, pki):
    crt, key = pki["a.test"]
    block = (
        "http {\n server {\n listen 127.0.0.1:{port};\n server_name a.test;\n"
        " return 301 https://$host$request_uri;\n }\n"
        " server {\n listen 127.0.0.1:%d ssl;\n server_name a.test;\n %s"
        " location / { return 200 \"$scheme\\n\"; }\n }\n}\n"
    )
    from harness import free_port

    tls_port = free_port()
    t = tollgate_factory(block % (tls_port, cert_lines(crt, key))).start()
    r = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", "-H", "Host: a.test", "http://127.0.0.1:%d/x?y=1" % t.port],
        capture_output=True, text=True, timeout=20,
    )
    assert "301" in r.stdout.split("\r\n")[0]
    assert "Location: https://a.test/x?y=1" in r.stdout
    r = curl(tls_port, "/", cafile=pki["ca"].ca_cert)
    assert r.stdout == "https\n"


def test_large_upload_streams_through_tls_to_upstream(tollgate_factory, pki, echo):
    # The TLS read path under backpressure: the stream stops at its read limit while OpenSSL
    # may still hold decrypted records, and resumes when the proxy drains the input.
    crt, key = pki["a.test"]
    block = (
        "http {\n server {\n listen 127.0.0.1:{port} ssl;\n server_name a.test;\n %s"
        " client_max_body_size 64m;\n location / { proxy_pass http://127.0.0.1:%d; }\n }\n}\n"
        % (cert_lines(crt, key), echo.port)
    )
    t = tollgate_factory(block).start()
    payload = os.urandom(12 * 1024 * 1024 + 5)
    path = t.path("upload.bin")
    with open(path, "wb") as f:
        f.write(payload)
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        r = curl(t.port, "/upload", "--data-binary", "@" + path, *extra, cafile=pki["ca"].ca_cert)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["body_len"] == len(payload)
        assert doc["body_sha256"] == hashlib.sha256(payload).hexdigest()
