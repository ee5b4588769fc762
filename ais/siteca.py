"""The site CA and the server's TLS certificate: who a client may talk to.

What it does: `init(cache)` makes the site's certificate authority, `CACHE/site/ca.pem` (a
self-signed ECDSA P-256 certificate, 10 years, CA with path length 0: it signs server
certificates only) and `CACHE/site/ca-key.pem` (mode 0600); like the site key it refuses to
replace one unless asked to rotate (the old pair is kept as `ca.<UTC time>.pem`, ...).
`read_ca(cache)` is the CA's PEM text, which `ais bootenv build` pins in the boot environment.
`issue_server(cache, names, days)` signs a server certificate for `ais serve`,
`CACHE/site/tls/server.pem` and `server-key.pem` (0600), valid for the names given (IP addresses
and DNS names: whatever the hosts write in their server URL). `make_certificate` is the pure
part, used with explicit times by the tests (an expired certificate) and by nobody else.

`server_context(cert, key)` is the `ssl.SSLContext` `ais serve` answers with (TLS 1.2 or later,
ECDHE with AES-GCM or ChaCha20 only; a SHA-1 signature only for a client that offers nothing
better, as busybox wget does), refusing a certificate that has expired and warning when it
expires within `WARN_DAYS`.
`certificate_status(cache)` is what `ais cache status` says of that certificate (names,
expiry, and what is wrong: missing, expired, expiring soon, not signed by the site CA).
`client_context(ca)` is the context of every client: it trusts the site CA in that file and
nothing else (no system store), and checks the name. `refusal(err, url, ca)` says in words why
a TLS connection was refused: another CA, expired, another name, not TLS at all.

Written here, not taken from a library, because no maintained library makes a private CA for
a program: `cryptography`'s x509 builder does the signing; this module only chooses the
extensions (RFC 5280: basicConstraints, keyUsage, extendedKeyUsage, key identifiers,
subjectAltName), where the files go and what the messages say.

Reads: the key and certificate files. Fails with `UsageError` (a CA exists and no rotation was
asked for; no CA to sign with; a name that is neither an address nor a DNS name; a certificate
or key file that is not one; a server certificate that has expired), `WorldError` (a file
cannot be read or written). Returns paths, contexts, messages.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import ssl
from pathlib import Path

from ais.errors import UsageError, WorldError, describe_os_error
from ais.files import set_aside, write_atomic
from ais.sitekey import read_key_file, site_dir

log = logging.getLogger("ais.siteca")

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
TLS_DIR = "tls"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
CA_DAYS = 3650
SERVER_DAYS = 397  # what browsers accept for a server certificate; `ais site cert --days` changes it
SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:@SECLEVEL=0"  # TLS 1.2; see server_context
WARN_DAYS = 14  # `ais serve` warns when its certificate expires sooner than this
DNS_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
                      re.IGNORECASE)


def ca_path(cache: str | os.PathLike) -> Path:
    return site_dir(cache) / CA_CERT


def read_ca(cache: str | os.PathLike) -> str | None:
    """The site CA certificate's PEM text (what a boot environment pins), None when the site has none."""
    from cryptography.hazmat.primitives import serialization

    cert = load_certificate(ca_path(cache), "the site CA")
    return None if cert is None else cert.public_bytes(serialization.Encoding.PEM).decode()


def ca_key_path(cache: str | os.PathLike) -> Path:
    return site_dir(cache) / CA_KEY


def server_paths(cache: str | os.PathLike) -> tuple[Path, Path]:
    """(certificate, key) of `ais serve` when no --tls-cert/--tls-key are given."""
    return site_dir(cache) / TLS_DIR / SERVER_CERT, site_dir(cache) / TLS_DIR / SERVER_KEY


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_pair(cert_file: Path, cert_pem: bytes, key_file: Path, key_pem: bytes) -> None:
    try:
        cert_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(key_file, key_pem, mode=0o600)
        write_atomic(cert_file, cert_pem, mode=0o644)
    except OSError as err:
        raise WorldError(f"cannot write {cert_file}: {describe_os_error(err)}") from err


# ------------------------------------------------------------------ the CA

def init(cache: str | os.PathLike, *, rotate: bool = False) -> tuple[str, list[Path]]:
    """Make the site CA; (its SHA-256 fingerprint, the files the old one was kept as when rotating)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_file, key_file = ca_path(cache), ca_key_path(cache)
    exists = cert_file.exists() or key_file.exists()
    if exists and not rotate:
        raise UsageError(f"the site already has a CA ({cert_file}); nothing was changed. To replace it run "
                         "`ais site init --rotate` (docs/server.md, \"Rotating the site key\")")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AIS site CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AIS")])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    kept = set_aside([cert_file, key_file], "ca") if exists else []
    site_dir(cache).mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_pair(cert_file, cert.public_bytes(serialization.Encoding.PEM), key_file, _pem_key(key))
    return fingerprint(cert), kept


def fingerprint(cert) -> str:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex()


def load_certificate(path: Path, what: str):
    """The x509 certificate in a PEM file, None when the file does not exist."""
    from cryptography import x509

    data = read_key_file(path, what)
    if data is None:
        return None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as err:
        raise UsageError(f"{path}: not a PEM certificate ({err})") from err


def load_ca(cache: str | os.PathLike):
    """(CA certificate, CA private key); UsageError when the site has no CA."""
    from cryptography.hazmat.primitives import serialization

    cert = load_certificate(ca_path(cache), "the site CA")
    key_pem = read_key_file(ca_key_path(cache), "the site CA's key")
    if cert is None or key_pem is None:
        raise UsageError(f"the site has no CA ({ca_path(cache)}): run `ais site init` (or `ais site init --ca` on "
                         "a site made before the CA)")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{ca_key_path(cache)}: not a PEM private key ({err})") from err
    return cert, key


# ------------------------------------------------------------------ the server's certificate

def parse_names(names: list[str]) -> list:
    """subjectAltName entries for the names given: an IP address, else a DNS name."""
    from cryptography import x509

    if not names:
        raise UsageError("name the server: --name ADDRESS|DNS-NAME (what the hosts' server URLs say), "
                         "one --name each")
    entries = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not DNS_NAME.fullmatch(name):
                raise UsageError(f"--name {name!r}: neither an IP address nor a DNS name") from None
            entries.append(x509.DNSName(name.lower()))
    return entries


def make_certificate(ca_cert, ca_key, names: list[str], not_before: datetime.datetime,
                     not_after: datetime.datetime) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a server certificate for `names`, signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    alt = parse_names(names)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue_server(cache: str | os.PathLike, names: list[str], days: int = SERVER_DAYS) -> tuple[Path, datetime.datetime]:
    """Sign `ais serve`'s certificate for `names` (valid `days` from now); (its file, when it expires)."""
    if days < 1:
        raise UsageError(f"--days {days}: a certificate is valid for at least 1 day")
    ca_cert, ca_key = load_ca(cache)
    now = _now()
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert_pem, key_pem = make_certificate(ca_cert, ca_key, names, now - datetime.timedelta(minutes=5), not_after)
    cert_file, key_file = server_paths(cache)
    _write_pair(cert_file, cert_pem, key_file, key_pem)
    return cert_file, not_after


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The context `ais serve` answers with; UsageError for a missing, unreadable or expired certificate."""
    cert = load_certificate(cert_file, "the server's TLS certificate")
    if cert is None:
        raise UsageError(f"no TLS certificate at {cert_file}: run `ais site cert --name ADDRESS` (the address "
                         "or name hosts use for the server; docs/server.md, \"TLS\"), or pass --plain-http to "
                         "serve without TLS (tokens and host files then cross the network in clear)")
    left = cert.not_valid_after_utc - _now()
    if left.total_seconds() <= 0:
        raise UsageError(f"{cert_file}: the server's TLS certificate expired on "
                         f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; issue a new one with "
                         "`ais site cert --name ADDRESS` (docs/server.md, \"TLS\")")
    if left.days < WARN_DAYS:
        log.warning("the server's TLS certificate %s expires in %d days (%s UTC): renew it with `ais site cert`",
                    cert_file, left.days, f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # busybox wget's own TLS (the first-boot report of an installed system that has only busybox)
    # sends no signature_algorithms extension, so TLS 1.2 signs its key exchange with ECDSA-SHA1,
    # which OpenSSL refuses above security level 0. Level 0 with forward-secret AEAD suites only:
    # a client that sends the extension (Python, curl, OpenSSL: none offers SHA-1) still gets SHA-256
    # or better, and TLS 1.3 is untouched.
    context.set_ciphers(SERVER_CIPHERS)
    try:
        context.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as err:
        raise UsageError(f"no TLS key at {key_file} for {cert_file}: issue both with `ais site cert`") from err
    except ssl.SSLError as err:
        raise UsageError(f"{cert_file} and {key_file}: not a certificate and its key ({err.reason})") from err
    except OSError as err:
        raise WorldError(f"cannot read {key_file}: {describe_os_error(err)}") from err
    return context


def certificate_status(cache: str | os.PathLike) -> dict:
    """What `ais cache status` says of the server's certificate: its names, when it expires, and what
    is wrong with it (missing, expired, expiring within WARN_DAYS, not signed by the site CA: a CA
    rotated since), or None."""
    from cryptography import x509

    cert_file, _ = server_paths(cache)
    try:
        cert = load_certificate(cert_file, "the server's TLS certificate")
        ca = load_certificate(ca_path(cache), "the site CA")
    except (UsageError, WorldError) as err:
        return {"certificate": str(cert_file), "names": [], "not_after": None, "days_left": None,
                "problem": str(err)}
    if cert is None:
        return {"certificate": None, "names": [], "not_after": None, "days_left": None,
                "problem": "no server certificate: `ais site cert --name ADDRESS` (ais serve refuses to start "
                           "without one unless --plain-http)"}
    names = [str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value]
    left = (cert.not_valid_after_utc - _now()).days
    problem = None
    if ca is None:
        problem = "the site has no CA (`ais site init --ca`), so no client can check this certificate"
    elif not _issued_by(cert, ca):
        problem = "not signed by the site CA (rotated since?): clients refuse it; run `ais site cert` again"
    elif cert.not_valid_after_utc <= _now():
        problem = "EXPIRED: ais serve refuses to start; run `ais site cert` again"
    elif left < WARN_DAYS:
        problem = f"expires in {left} days: renew with `ais site cert`, then restart ais serve"
    return {"certificate": str(cert_file), "names": names, "not_after": f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}",
            "days_left": left, "problem": problem}


def _issued_by(cert, ca) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):  # another issuer name, key type or signature
        return False
    return True


# ------------------------------------------------------------------ clients

def client_context(ca_file: str | os.PathLike) -> ssl.SSLContext:
    """A context that trusts the site CA in `ca_file` and nothing else, and checks the server's name."""
    try:
        context = ssl.create_default_context(cafile=os.fspath(ca_file))  # a cafile: no system store is loaded
    except FileNotFoundError as err:
        raise UsageError(f"--site-ca {ca_file}: no such file (the site CA is CACHE/site/ca.pem)") from err
    except ssl.SSLError as err:
        raise UsageError(f"--site-ca {ca_file}: not a PEM certificate ({err.reason})") from err
    except OSError as err:
        raise WorldError(f"cannot read {ca_file}: {describe_os_error(err)}") from err
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def refusal(err: ssl.SSLError, url: str, ca_file: str | os.PathLike | None) -> str:
    """Why a TLS connection to `url` was refused, in words."""
    trust = f"the site CA in {ca_file}" if ca_file else "the site CA"
    if isinstance(err, ssl.SSLCertVerificationError):
        reason = err.verify_message or str(err)
        if "unable to get local issuer" in reason or "self-signed" in reason or "self signed" in reason:
            reason = f"is not signed by {trust} ({reason})"
        elif "expired" in reason:
            reason = f"has expired ({reason})"
        elif "mismatch" in reason or "not valid for" in reason:
            reason = f"does not name that server ({reason})"
        return f"refusing the server at {url}: its TLS certificate {reason}; nothing was written"
    return (f"TLS with the server at {url} failed ({err.reason or err}): is it serving HTTPS, and is the "
            "URL's scheme right?; nothing was written")
