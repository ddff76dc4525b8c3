"""proxy_pass https:// with variables: the host comes from each request, is resolved through
`resolver` (a real DNS server on 127.0.0.1, tests/integration/dnsserver.py) or names an upstream
block or is an IP literal, and the connection uses the location's client TLS context: SNI is
the URL's host with proxy_ssl_server_name on (or proxy_ssl_name), the certificate is verified
against that name with proxy_ssl_verify on, and a mismatch is a 502."""
import json

import pytest

from dnsserver import DnsServer
from test_proxy_ssl import TlsUpstream, get, pki  # noqa: F401  (pki is a fixture)


@pytest.fixture
def svc(pki):  # noqa: F811
    up = TlsUpstream(*pki["svc"])
    yield up
    up.stop()


@pytest.fixture
def dns():
    d = DnsServer({"svc.internal": ["127.0.0.1"], "other.internal": ["127.0.0.1"]}, ttl=60)
    yield d
    d.stop()


def conf(location, http_extra=""):
    return (
        "http {\n%s\n server {\n listen 127.0.0.1:{port};\n location / {\n%s\n }\n }\n}\n"
        % (http_extra, location)
    )


def verify_lines(pki, extra=""):  # noqa: F811
    return " proxy_ssl_verify on;\n proxy_ssl_trusted_certificate %s;\n%s" % (pki["ca"].ca_cert, extra)


def test_resolved_name_verified_and_sent_as_sni(tollgate_factory, pki, svc, dns):  # noqa: F811
    t = tollgate_factory(conf(
        " resolver 127.0.0.1:%d;\n proxy_pass https://$arg_h:%d;\n proxy_ssl_server_name on;\n%s"
        % (dns.port, svc.port, verify_lines(pki)))).start()
    status, body = get(t.port, "/a/b?h=svc.internal")
    assert status == 200, body
    assert json.loads(body)["path"] == "/a/b?h=svc.internal"
    assert svc.sni[-1] == "svc.internal"
    assert dns.count("svc.internal", "A") >= 1
    # The same location, another name the certificate does not carry: 502.
    status, body = get(t.port, "/a/b?h=other.internal")
    assert status == 502, body
    assert "certificate verify failed" in t.error_log()
    assert svc.sni[-1] == "other.internal"


def test_server_name_off_sends_no_sni(tollgate_factory, pki, svc, dns):  # noqa: F811
    t = tollgate_factory(conf(
        " resolver 127.0.0.1:%d;\n proxy_pass https://$arg_h:%d;\n%s"
        % (dns.port, svc.port, verify_lines(pki)))).start()
    status, body = get(t.port, "/?h=svc.internal")
    assert status == 200, body  # verified against the URL's host even without SNI
    assert svc.sni[-1] is None


def test_verify_off_and_ip_literal(tollgate_factory, pki, svc):  # noqa: F811
    t = tollgate_factory(conf(" proxy_pass https://$arg_h:%d/fixed;" % svc.port)).start()
    status, body = get(t.port, "/x?h=127.0.0.1")
    assert status == 200, body
    assert json.loads(body)["path"] == "/fixed"  # a URI part replaces the request URI
    # Verification on: 127.0.0.1 is not in the certificate -> 502; proxy_ssl_name fixes it.
    t2 = tollgate_factory(conf(" proxy_pass https://$arg_h:%d;\n proxy_ssl_server_name on;\n%s"
                               % (svc.port, verify_lines(pki))))
    t2.start()
    assert get(t2.port, "/?h=127.0.0.1")[0] == 502
    assert svc.sni[-1] is None  # RFC 6066, as nginx: no SNI for an IP literal
    t3 = tollgate_factory(conf(
        " proxy_pass https://$arg_h:%d;\n proxy_ssl_server_name on;\n%s"
        % (svc.port, verify_lines(pki, " proxy_ssl_name svc.internal;\n"))))
    t3.start()
    status, body = get(t3.port, "/?h=127.0.0.1")
    assert status == 200, body
    assert svc.sni[-1] == "svc.internal"


def test_variable_naming_an_upstream_block(tollgate_factory, pki, svc):  # noqa: F811
    t = tollgate_factory(conf(
        " proxy_pass https://$arg_h;\n proxy_ssl_server_name on;\n%s" % verify_lines(pki),
        http_extra=" upstream svc.internal { server 127.0.0.1:%d; }" % svc.port)).start()
    for _ in range(3):
        status, body = get(t.port, "/u?h=svc.internal")
        assert status == 200, body
        assert svc.sni[-1] == "svc.internal"


def test_scheme_from_a_variable_and_config_errors(tollgate_factory, pki, svc):  # noqa: F811
    t = tollgate_factory(conf(" proxy_pass $arg_u;")).start()
    status, body = get(t.port, "/?u=https://127.0.0.1:%d/s" % svc.port)
    assert status == 200, body
    assert json.loads(body)["path"] == "/s"
    t2 = tollgate_factory(conf(" proxy_pass ftp://$arg_h;"))
    rc, err = t2.test_config()
    assert rc == 1 and 'invalid URL prefix in "ftp://$arg_h"' in err and ":12:" in err, err
    t3 = tollgate_factory(conf(" proxy_pass https://$arg_h;\n proxy_ssl_verify on;"))
    rc, err = t3.test_config()
    assert rc == 1 and "no proxy_ssl_trusted_certificate for proxy_ssl_verify" in err, err
