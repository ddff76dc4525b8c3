"""Test certificates made with the real `openssl` CLI in a temporary folder.

Pki(dir) makes a CA (with `openssl ca`, so it can also make an expired certificate, revoke one
and publish a CRL) and issues server and client certificates from it.
"""
import os
import subprocess
import textwrap

CA_CONF = textwrap.dedent(
    """\
    [ ca ]
    default_ca = local
    [ local ]
    dir = {dir}
    database = $dir/index.txt
    new_certs_dir = $dir/newcerts
    serial = $dir/serial
    crlnumber = $dir/crlnumber
    certificate = $dir/ca.crt
    private_key = $dir/ca.key
    default_md = sha256
    default_days = 30
    default_crl_days = 30
    policy = any
    copy_extensions = copy
    unique_subject = no
    [ any ]
    commonName = supplied
    organizationName = optional
    [ req ]
    distinguished_name = dn
    prompt = no
    [ dn ]
    CN = unused
    [ ca_ext ]
    basicConstraints = critical,CA:true
    keyUsage = critical,keyCertSign,cRLSign
    subjectKeyIdentifier = hash
    [ server_ext ]
    basicConstraints = CA:false
    keyUsage = critical,digitalSignature,keyEncipherment
    extendedKeyUsage = serverAuth
    [ client_ext ]
    basicConstraints = CA:false
    keyUsage = critical,digitalSignature
    extendedKeyUsage = clientAuth
    """
)


def run(*args, cwd=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr))
    return r.stdout


class Pki:
    """A CA in `root` (a folder that exists) named `name`."""

    def __init__(self, root, name="Test CA"):
        self.dir = root
        os.makedirs(os.path.join(root, "newcerts"), exist_ok=True)
        open(os.path.join(root, "index.txt"), "w").close()
        with open(os.path.join(root, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(root, "crlnumber"), "w") as f:
            f.write("1000\n")
        self.conf = os.path.join(root, "ca.conf")
        with open(self.conf, "w") as f:
            f.write(CA_CONF.format(dir=root))
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.path("ca.key"),
            "-out", self.path("ca.crt"), "-days", "30", "-subj", "/CN=%s" % name,
            "-config", self.conf, "-extensions", "ca_ext")

    def path(self, name):
        return os.path.join(self.dir, name)

    @property
    def ca_cert(self):
        return self.path("ca.crt")

    def issue(self, name, cn, kind="server", key="rsa", sans=None, start=None, end=None, org=None):
        """Issues NAME.crt / NAME.key; returns (cert path, key path)."""
        key_path = self.path(name + ".key")
        csr = self.path(name + ".csr")
        if key == "rsa":
            run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key_path)
        else:
            run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key_path)
        subj = "/CN=%s" % cn + ("/O=%s" % org if org else "")
        args = ["req", "-new", "-key", key_path, "-out", csr, "-subj", subj, "-config", self.conf]
        if sans:
            args += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
        run(*args)
        crt = self.path(name + ".crt")
        args = ["ca", "-batch", "-config", self.conf, "-in", csr, "-out", crt, "-notext",
                "-extensions", "server_ext" if kind == "server" else "client_ext"]
        if start:
            args += ["-startdate", start]
        if end:
            args += ["-enddate", end]
        run(*args)
        os.chmod(key_path, 0o644)  # test keys: workers run as nobody only if tests run as root
        return crt, key_path

    def revoke(self, crt):
        run("ca", "-batch", "-config", self.conf, "-revoke", crt)

    def crl(self):
        out = self.path("ca.crl")
        run("ca", "-batch", "-config", self.conf, "-gencrl", "-out", out)
        return out

    def serial_of(self, crt):
        return run("x509", "-in", crt, "-noout", "-serial").strip().split("=", 1)[1]

    def fingerprint_of(self, crt):
        out = run("x509", "-in", crt, "-noout", "-fingerprint", "-sha1").strip()
        return out.split("=", 1)[1].replace(":", "").lower()
