"""RFC 3161 client and token checks against the real loopback TSA (tests/support/tsa_server.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from cryptography.hazmat.primitives.serialization import Encoding

from kmssign._internal.timestamp.client import (
    TimestampClient,
    TimeStampResp,
    build_request,
    check_token,
    http_post,
    parse_response,
)
from kmssign.errors import ConfigError, KmsSignError, TimestampError, VerificationError
from tests.support.pki import NOW, TIME_STAMPING, make_root
from tests.support.tsa_server import LoopbackTSA, make_tst_info, sign_tst_info

SIGNATURE = os.urandom(256)  # stands in for a SignerInfo signature value
TIMEOUT = 0.5


@pytest.fixture
def server(tsa: LoopbackTSA) -> LoopbackTSA:
    tsa.reset()
    return tsa


class Recorder:
    """Collects log lines and (fake) sleeps."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.sleeps: list[float] = []

    def client(self, urls: list[str], **kwargs: object) -> TimestampClient:
        options: dict[str, object] = {
            "timeout": TIMEOUT,
            "log": self.lines.append,
            "sleep": self.sleeps.append,
        }
        options.update(kwargs)
        return TimestampClient(urls, **options)  # type: ignore[arg-type]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def openssl_ts_verify(tmp_path: Path, data: bytes, reply: Path, root: Path, *extra: str) -> str:
    (tmp_path / "data.bin").write_bytes(data)
    result = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(tmp_path / "data.bin"),
            "-in",
            str(reply),
            "-CAfile",
            str(root),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


# -- good path ---------------------------------------------------------------------


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_good_token_is_validated_and_chains_to_root(server, pki, rec, digest) -> None:
    token = rec.client([server.url()]).timestamp(SIGNATURE, digest)
    info = check_token(token, SIGNATURE, roots=[pki.root.cert])
    assert info.digest == digest
    assert info.tsa_subject == pki.tsa.cert.subject.rfc4514_string()
    assert abs(info.gen_time - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(hours=1)
    assert server.count("tsa") == 1
    assert rec.lines == []


@pytest.mark.parametrize("mode", ["ec", "ski"])
def test_ecdsa_tsa_and_ski_signer_identifier_are_accepted(server, pki, rec, mode) -> None:
    token = rec.client([server.url(mode)]).timestamp(SIGNATURE)
    info = check_token(token, SIGNATURE, roots=[pki.root.cert])
    expected = "kmssign Test ECDSA TSA" if mode == "ec" else "kmssign Test TSA"
    assert f"CN={expected}" in info.tsa_subject


def test_openssl_accepts_the_reply_and_the_token(server, pki, tmp_path) -> None:
    nonce = 0x1234567890ABCDEF
    request = build_request(SIGNATURE, "sha256", nonce)
    (tmp_path / "query.tsq").write_bytes(request)
    reply = tmp_path / "reply.tsr"
    reply.write_bytes(http_post(server.url(), request, 5.0))
    out = openssl_ts_verify(tmp_path, SIGNATURE, reply, pki.root_pem)
    assert "Verification: OK" in out, out
    # the query check also compares the nonce openssl finds in the token
    query = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-queryfile",
            str(tmp_path / "query.tsq"),
            "-in",
            str(reply),
            "-CAfile",
            str(pki.root_pem),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Verification: OK" in query.stdout, query.stderr

    token_file = tmp_path / "token.der"
    token_file.write_bytes(parse_response(reply.read_bytes()).dump())
    out = openssl_ts_verify(tmp_path, SIGNATURE, token_file, pki.root_pem, "-token_in")
    assert "Verification: OK" in out, out
    # and openssl is a real check: another root or other data fail
    other_root = tmp_path / "other-root.pem"
    other_root.write_bytes(make_root("Unrelated Root").cert.public_bytes(Encoding.PEM))
    assert "Verification: OK" not in openssl_ts_verify(tmp_path, SIGNATURE, reply, other_root)
    assert "Verification: OK" not in openssl_ts_verify(tmp_path, b"other", reply, pki.root_pem)


def test_request_has_nonce_certreq_and_imprint() -> None:
    request = tsp.TimeStampReq.load(build_request(SIGNATURE, "sha384", 42))
    assert request["version"].native == "v1"
    assert request["nonce"].native == 42
    assert request["cert_req"].native is True
    imprint = request["message_imprint"]
    assert imprint["hash_algorithm"]["algorithm"].native == "sha384"
    assert imprint["hashed_message"].native == hashlib.sha384(SIGNATURE).digest()


def test_requests_use_fresh_nonces(server, rec) -> None:
    client = rec.client([server.url()])
    nonces = {
        client.timestamp(SIGNATURE)["content"]["encap_content_info"]["content"]
        .parsed["nonce"]
        .native
        for _ in range(3)
    }
    assert len(nonces) == 3


def test_server_insists_on_the_timestamp_query_content_type(server) -> None:
    request = urllib.request.Request(
        server.url(),
        data=build_request(SIGNATURE, "sha256", 1),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=5)
    assert excinfo.value.code == 415


def test_client_is_safe_to_share_between_threads(server, pki, rec) -> None:
    client = rec.client([server.url()], timeout=10.0)
    values = [os.urandom(64) for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        tokens = list(pool.map(client.timestamp, values))
    for value, token in zip(values, tokens, strict=True):
        check_token(token, value, roots=[pki.root.cert])
    assert server.count("tsa") == 8


# -- failover ----------------------------------------------------------------------

NOT_RETRIED = {
    "http500": "HTTP 500",
    "garbage": "not a DER TimeStampResp",
    "rejection": "request refused: rejection",
    "wrong-nonce": "nonce",
    "wrong-imprint": "message imprint does not match",
    "no-eku": "lacks the timeStamping extended key usage",
    "bad-signature": "signature does not verify",
}


@pytest.mark.parametrize("mode", sorted(NOT_RETRIED))
def test_bad_reply_moves_on_to_next_url_without_retry(server, rec, mode) -> None:
    bad = server.url(mode)
    token = rec.client([bad, server.url()], tries=3).timestamp(SIGNATURE)
    assert isinstance(token, cms.ContentInfo)
    assert server.count(mode) == 1
    assert server.count("tsa") == 1
    assert len(rec.lines) == 1
    assert rec.lines[0].startswith(f"timestamp server {bad} failed: ")
    assert NOT_RETRIED[mode] in rec.lines[0]
    assert "\n" not in rec.lines[0]
    assert rec.sleeps == []


@pytest.mark.parametrize("mode", ["http503", "http429", "slow", "refused"])
def test_transient_failures_are_retried_with_backoff_then_fail_over(server, rec, mode) -> None:
    bad = server.refused_url() if mode == "refused" else server.url(mode)
    tries = 2 if mode == "slow" else 3
    token = rec.client([bad, server.url()], tries=tries, backoff=0.25).timestamp(SIGNATURE)
    assert isinstance(token, cms.ContentInfo)
    if mode != "refused":
        assert server.count(mode) == tries
    assert server.count("tsa") == 1
    assert rec.sleeps == [0.25, 0.5][: tries - 1]
    assert len(rec.lines) == 1  # one line per file and server while it is retried
    assert all(line.startswith(f"timestamp server {bad} failed: ") for line in rec.lines)
    expected = {
        "http503": "HTTP 503",
        "http429": "HTTP 429",
        "slow": f"no reply within {TIMEOUT:g} s",
        "refused": "connection refused",
    }[mode]
    assert all(expected in line for line in rec.lines), rec.lines
    assert rec.lines[-1].endswith(f"; up to {tries} tries")


def test_flaky_server_succeeds_on_a_later_try(server, rec) -> None:
    token = rec.client([server.url("flaky-2"), server.url()], tries=3).timestamp(SIGNATURE)
    assert isinstance(token, cms.ContentInfo)
    assert server.count("flaky-2") == 3
    assert server.count("tsa") == 0
    assert rec.sleeps == [1.0, 2.0]
    assert len(rec.lines) == 1  # one line per file and server while it is retried


def test_flakier_than_tries_falls_over(server, rec) -> None:
    rec.client([server.url("flaky-5"), server.url()], tries=3).timestamp(SIGNATURE)
    assert server.count("flaky-5") == 3
    assert server.count("tsa") == 1


def test_every_url_failing_raises_naming_each(server, rec) -> None:
    refused = server.refused_url()
    urls = [server.url("http500"), refused, server.url("no-eku")]
    with pytest.raises(TimestampError) as excinfo:
        rec.client(urls, tries=1).timestamp(SIGNATURE)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, KmsSignError)
    assert message.startswith("no timestamp server answered: 3 servers tried, the last ")
    # each server's failure: a line as it happens, and in the exception for a library caller
    failures = excinfo.value.failures
    assert failures[0].startswith(f"{urls[0]}: HTTP 500")
    assert failures[1].startswith(f"{refused}: connection refused")
    assert failures[2].startswith(f"{urls[2]}: TSA certificate")
    assert len(rec.lines) == 3
    for line, url in zip(rec.lines, urls, strict=True):
        assert f"timestamp server {url} failed: " in line
    # the final message: the last failure in full, then the way out, on one short line
    assert f"{urls[2]}: TSA certificate" in message and urls[0] not in message
    assert message.endswith("or set timestamp to optional")
    assert "\n" not in message and len(message) < 300


def test_injected_post_function_is_used(pki, rec, server) -> None:
    calls: list[tuple[str, float]] = []

    def post(url: str, body: bytes, timeout: float) -> bytes:
        calls.append((url, timeout))
        return http_post(server.url(), body, timeout)

    rec.client(["https://tsa.invalid/"], post=post, timeout=3.0).timestamp(SIGNATURE)
    assert calls == [("https://tsa.invalid/", 3.0)]


def test_constructor_validates_and_does_no_network(server) -> None:
    TimestampClient([server.refused_url()])  # nothing listens there: still fine
    with pytest.raises(ConfigError) as excinfo:
        TimestampClient(["ftp://example.com/"], tries=0, timeout=0)
    assert len(excinfo.value.problems) == 3
    with pytest.raises(ConfigError):
        TimestampClient([])


def test_unsupported_request_digest() -> None:
    with pytest.raises(TimestampError, match="md5"):
        build_request(SIGNATURE, "md5", 1)


def test_parse_response_reports_status_and_missing_token() -> None:
    rejected = TimeStampResp(
        {
            "status": {
                "status": "rejection",
                "status_string": ["policy unknown"],
                "fail_info": {"unaccepted_policy"},
            }
        }
    ).dump()
    with pytest.raises(TimestampError, match="rejection; policy unknown; unaccepted_policy"):
        parse_response(rejected)
    with pytest.raises(TimestampError, match="no token"):
        parse_response(TimeStampResp({"status": {"status": "granted"}}).dump())


# -- check_token -------------------------------------------------------------------


@pytest.fixture
def good_token(server: LoopbackTSA) -> cms.ContentInfo:
    return TimestampClient([server.url()]).timestamp(SIGNATURE)


def reject(token: cms.ContentInfo, fragment: str, **kwargs: object) -> None:
    with pytest.raises(VerificationError) as excinfo:
        check_token(token, kwargs.pop("value", SIGNATURE), **kwargs)  # type: ignore[arg-type]
    assert fragment in str(excinfo.value)


def test_check_token_accepts_the_right_root(good_token, pki) -> None:
    assert check_token(good_token, SIGNATURE, roots=[make_root().cert, pki.root.cert])


def test_check_token_rejects_other_signature_value(good_token) -> None:
    reject(good_token, "message imprint does not match", value=SIGNATURE[::-1])


def test_check_token_rejects_wrong_nonce(good_token) -> None:
    reject(good_token, "nonce", nonce=7)


def test_check_token_rejects_flipped_tst_info_byte(good_token) -> None:
    der = good_token.dump()
    imprint = (
        good_token["content"]["encap_content_info"]["content"]
        .parsed["message_imprint"]["hashed_message"]
        .native
    )
    at = der.index(imprint)
    tampered = bytearray(der)
    tampered[at + 5] ^= 0x40
    reject(cms.ContentInfo.load(bytes(tampered)), "messageDigest does not match")


def test_check_token_rejects_wrong_root(good_token) -> None:
    reject(good_token, "does not chain to a trusted root", roots=[make_root("Other Root").cert])


def test_check_token_rejects_tsa_without_eku(server, pki) -> None:
    reply = http_post(server.url("no-eku"), build_request(SIGNATURE, "sha256", 5), 5.0)
    reject(
        parse_response(reply), "lacks the timeStamping extended key usage", roots=[pki.root.cert]
    )


def _token(pki, signer=None, **kwargs: object) -> cms.ContentInfo:
    request = tsp.TimeStampReq.load(build_request(SIGNATURE, "sha256", 99))
    signer = signer or pki.tsa
    return sign_tst_info(make_tst_info(request, 1, signer), signer, **kwargs)  # type: ignore[arg-type]


def test_check_token_needs_the_tsa_certificate(pki) -> None:
    assert check_token(_token(pki), SIGNATURE, nonce=99).digest == "sha256"
    reject(_token(pki, include_cert=False), "does not contain the TSA signing certificate")


def test_check_token_rejects_tsa_expired_at_gen_time(pki) -> None:
    expired = pki.root.issue_with_key(
        "kmssign Expired TSA",
        "p256",
        eku=TIME_STAMPING,
        eku_critical=True,
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )
    reject(_token(pki, expired), "is not valid at the token time")


def test_check_token_rejects_a_tsa_from_another_root_even_with_intermediates(pki) -> None:
    rogue_root = make_root("Rogue Root")
    rogue_tsa = rogue_root.issue_with_key(
        "Rogue TSA", "rsa2048", eku=TIME_STAMPING, eku_critical=True
    )
    token = _token(pki, rogue_tsa)
    assert check_token(token, SIGNATURE).tsa_subject.endswith("CN=Rogue TSA")
    reject(token, "does not chain", roots=[pki.root.cert])
    assert check_token(token, SIGNATURE, roots=[rogue_root.cert])


def test_check_token_rejects_non_timestamp_content(pki) -> None:
    token = _token(pki)
    data = cms.ContentInfo({"content_type": "data", "content": b"hello"})
    reject(data, "not signed data")
    signed = token["content"]
    signed["encap_content_info"] = {
        "content_type": "data",
        "content": signed["encap_content_info"]["content"],
    }
    reject(cms.ContentInfo.load(token.dump(force=True)), "not a TSTInfo")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda der: der[:-10],
        lambda der: der[:40] + b"\xff" * 8 + der[48:],
    ],
)
def test_check_token_never_crashes_on_broken_der(pki, mutate: Callable[[bytes], bytes]) -> None:
    broken = mutate(_token(pki).dump())
    try:
        token = cms.ContentInfo.load(broken)
    except ValueError:
        return  # rejected by the parser already
    with pytest.raises(VerificationError):
        check_token(token, SIGNATURE)


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 255, 256, -1, -128, -129, -256, -32768, -32769, 2**63, -(2**64)]
)
def test_der_integer_is_minimal_twos_complement(value: int) -> None:
    from asn1crypto import core

    from kmssign._internal.der import der_integer

    assert der_integer(value) == core.Integer(value).dump()


def test_request_bytes_match_asn1crypto_encoding() -> None:
    """build_request encodes by hand; asn1crypto must produce the very same DER."""
    rng = random.Random(3161)
    for digest in ("sha256", "sha384", "sha512"):
        for nonce in (1, 127, 128, (1 << 62) | rng.getrandbits(62)):
            signature = rng.randbytes(rng.randint(64, 512))
            expected = tsp.TimeStampReq({
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": digest},
                    "hashed_message": hashlib.new(digest, signature).digest(),
                },
                "nonce": nonce,
                "cert_req": True,
            }).dump()
            assert build_request(signature, digest, nonce) == expected


def test_signer_named_by_an_equal_but_differently_encoded_issuer(server, pki, rec) -> None:
    """The SignerInfo may spell the issuer with other string types than the certificate
    does; the TSA certificate is still found (RFC 5280 name comparison), and a wrong
    serial still is not."""
    from asn1crypto import x509 as asn1_x509

    token = rec.client([server.url()]).timestamp(SIGNATURE)

    def with_sid(serial_delta: int) -> cms.ContentInfo:
        copy = cms.ContentInfo.load(token.dump())
        signer_info = copy["content"]["signer_infos"][0]
        sid = signer_info["sid"].chosen
        rdns = []
        for rdn in sid["issuer"].chosen:  # same order and values, PrintableString spelling
            pairs = []
            for pair in rdn:
                value = pair["value"]
                if isinstance(value, asn1_x509.DirectoryString):
                    value = asn1_x509.DirectoryString(
                        name="printable_string", value=value.native
                    )
                pairs.append({"type": pair["type"].native, "value": value})
            rdns.append(asn1_x509.RelativeDistinguishedName(pairs))
        issuer = asn1_x509.Name(name="", value=asn1_x509.RDNSequence(rdns))
        assert issuer.dump() != sid["issuer"].dump() and issuer == sid["issuer"]
        signer_info["sid"] = cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": issuer, "serial_number": sid["serial_number"].native + serial_delta},
        )
        return cms.ContentInfo.load(copy.dump(force=True))

    info = check_token(with_sid(0), SIGNATURE, roots=[pki.root.cert])
    assert info.tsa_subject == pki.tsa.cert.subject.rfc4514_string()
    with pytest.raises(VerificationError, match="does not contain the TSA signing certificate"):
        check_token(with_sid(1), SIGNATURE)
