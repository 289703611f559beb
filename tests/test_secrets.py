"""Credentials in a URL (``http://user:secret@host/``) never reach a message, a log line or
the JSON report, for the timestamp servers, the KMS endpoint and the settings alike."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kmssign.errors import redact
from tests.support.helpers import run_cli, sign_args
from tests.support.kms_proxy import KmsProxy
from tests.support.pki import TestPKI

SECRET = "s3cr3t-Pa55"


def with_secret(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://builder:{SECRET}@{rest}"


def clean(out: str, err: str) -> dict:
    """The run's JSON report, after checking that no output holds the secret."""
    assert SECRET not in out and SECRET not in err
    assert "builder" not in out and "builder" not in err  # the user name is redacted too
    assert "Traceback" not in err
    report: dict = json.loads(out)
    assert SECRET not in json.dumps(report)
    return report


@pytest.fixture
def kms_proxy(kms_server) -> Iterator[KmsProxy]:
    proxy = KmsProxy(kms_server.endpoint_url).start()
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("policy", ["required", "optional"])
def test_timestamp_urls(capsys, pki: TestPKI, samples, tsa, policy: str) -> None:
    urls = [with_secret(tsa.url("http500")), with_secret(tsa.refused_url())]
    args = [a for url in urls for a in ("--timestamp-url", url)]
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--json", "--jobs", "1",
        *sign_args(pki.identity("rsa2048"), *args, "--timestamp", policy),
    )
    report = clean(out, err)
    assert code == (1 if policy == "required" else 0)
    logged = [line for line in err.splitlines() if line.startswith("timestamp server ")]
    assert logged and all(line.startswith("timestamp server http://***@127.0.0.1:")
                          for line in logged), err
    first = report["files"][0]
    said = first["reason"] if policy == "required" else first["warnings"][0]
    assert "no timestamp server answered: 2 servers tried, the last " in said
    assert f"{redact(urls[1])}: connection refused" in said
    assert any(f"timestamp server {redact(urls[0])} failed: HTTP 500" in line
               for line in logged), err
    later = report["files"][1]
    said = later["reason"] if policy == "required" else later["warnings"][0]
    assert "not asking the timestamp servers again in this run: " in said


def test_timestamp_command(capsys, pki: TestPKI, samples, tsa) -> None:
    paths = [str(p) for p in samples.values()]
    code, _, err = run_cli(capsys, "sign", *paths, *sign_args(pki.identity("p256")))
    assert code == 0, err
    url = with_secret(tsa.url("http503"))
    code, out, err = run_cli(
        capsys, "timestamp", *paths, "--json", "--jobs", "1", "--timestamp-url", url
    )
    report = clean(out, err)
    assert code == 1
    reason = report["files"][0]["reason"]
    assert f"{redact(url)}: HTTP 503 Service Unavailable (try 3 of 3)" in reason


def test_unreachable_kms_endpoint(capsys, aws_env, kms_identity, samples, tsa,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    identity = kms_identity("RSA_2048")
    endpoint = with_secret(tsa.refused_url().removesuffix("/tsa"))
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--no-timestamp", "--key-id",
        identity.key_id, "--cert", str(identity.cert_path), "--endpoint-url", endpoint,
    )
    assert code == 1
    assert SECRET not in out + err and "builder" not in err
    assert f"cannot reach the KMS endpoint {redact(endpoint)}/ for KMS key" in err


def test_kms_endpoint_that_fails_mid_run(
    capsys, aws_env, kms_identity, kms_proxy: KmsProxy, samples, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through an endpoint URL with credentials (botocore accepts it), each file's reason
    names the endpoint without them."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    identity = kms_identity("RSA_2048")
    kms_proxy.dropping.add("Sign")
    endpoint = with_secret(kms_proxy.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    code, out, err = run_cli(
        capsys, "sign", *map(str, samples.values()), "--json", "--no-timestamp", "--jobs", "1",
        "--key-id", identity.key_id, "--cert", str(identity.cert_path),
    )
    report = clean(out, err)
    assert code == 1
    reasons = [f["reason"] for f in report["files"]]
    assert reasons[0].startswith(f"cannot reach the KMS endpoint {redact(endpoint)}/ for KMS key")
    assert all(r.startswith("not calling KMS again in this run: cannot reach") for r in reasons[1:])


@pytest.mark.parametrize(
    ("flag", "env"),
    [("--endpoint-url", "KMSSIGN_ENDPOINT_URL"), ("--timestamp-url", "KMSSIGN_TIMESTAMP_URLS")],
)
def test_settings_errors(capsys, pki: TestPKI, samples, monkeypatch: pytest.MonkeyPatch,
                         flag: str, env: str) -> None:
    bad = f"ftp://builder:{SECRET}@example.com/x"
    monkeypatch.setenv(env, f"ftp://builder:{SECRET} with a blank@example.com")
    code, out, err = run_cli(
        capsys, "sign", str(samples["t64.exe"]), *sign_args(pki.identity("rsa2048"), flag, bad)
    )
    assert code == 2
    assert SECRET not in out + err and "builder" not in err
    assert err.count("'ftp://***@example.com") == 2, err  # the flag's and the variable's


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pass@host/x", "http://***@host/x"),
        ("https://TOKEN@host", "https://***@host"),
        ("'http://u:p@ss@h'", "'http://***@h'"),  # the user information ends at the last @
        ("a,http://a:b@c,http://c:d@e/ z", "a,http://***@c,http://***@e/ z"),
        ("not 'http://user:my secret@host'", "not 'http://***@host'"),
        ("http://host/p?to=a@b and mail@example.com", "http://host/p?to=a@b and mail@example.com"),
        ("http://host, ask mail@example.com", "http://***@example.com"),  # in doubt: hide
        ("'http://host' or 'mail@example.com'", "'http://host' or 'mail@example.com'"),
        ("no URL at all", "no URL at all"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
