"""docs/how-to/aws-kms.md (the AWS runbook) stays true: its policies parse and grant only
what kmssign calls, and every ``sh`` block runs, in order, against moto's KMS/IAM/STS server
with the real AWS CLI and kmssign, whose KMS calls are counted on the wire (the CloudTrail
table's numbers)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import peutil
from tests.support.fixtures_kms import DUMMY_KEY, DUMMY_SECRET, KmsServer, kms_client
from tests.support.kms_proxy import KmsProxy
from tests.support.pki import CODE_SIGNING, TestPKI, write_pem

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = (ROOT / "docs" / "how-to" / "aws-kms.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w+)[ \t]*([^\n]*)\n(.*?)^```", flags=re.M | re.S)
KEY_ARN = re.compile(r"arn:aws:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}")


def blocks(language: str) -> list[tuple[str, str]]:
    """(title="..." after the language, or the rest of the info; body) of every fenced
    block in ``language``."""
    found = []
    for lang, info, body in BLOCK.findall(RUNBOOK):
        if lang == language:
            title = re.fullmatch(r'title="([^"]*)"', info.strip())
            found.append((title.group(1) if title else info.strip(), body))
    return found


def json_files() -> dict[str, Any]:
    return {name: json.loads(body) for name, body in blocks("json")}


def test_policy_grants_sign_and_get_public_key_on_one_key_arn_only() -> None:
    policy = json_files()["kmssign-policy.json"]
    assert policy["Version"] == "2012-10-17"
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["kms:GetPublicKey", "kms:Sign"]
    assert isinstance(statement["Resource"], str) and KEY_ARN.fullmatch(statement["Resource"])


def test_trust_policy_lets_only_github_oidc_for_one_repository_assume_the_role() -> None:
    trust = json_files()["github-trust-policy.json"]
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith(
        ":oidc-provider/token.actions.githubusercontent.com")
    condition = statement["Condition"]
    assert condition["StringEquals"] == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}
    subject = condition["StringLike"]["token.actions.githubusercontent.com:sub"]
    assert re.fullmatch(r"repo:[\w.-]+/[\w.-]+:[^*]+\*?", subject), subject


def test_every_json_block_is_named_and_every_name_is_used() -> None:
    names = [info for info, _ in blocks("json")]
    assert sorted(names) == ["github-trust-policy.json", "kmssign-policy.json"]
    commands = "\n".join(body for _, body in blocks("sh"))
    assert all(f"file://{name}" in commands for name in names)


def expected_calls(script: str, pe_files: int) -> Counter[str]:
    """KMS calls of the kmssign commands in ``script``, as the CloudTrail table gives them."""
    calls: Counter[str] = Counter()
    for command in re.findall(r"^kmssign (\w+)", script, flags=re.M):
        if command in ("sign", "csr", "pubkey"):
            calls["GetPublicKey"] += 1
        calls["Sign"] += {"sign": pe_files, "csr": 1}.get(command, 0)
    return calls


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[KmsServer]:
    """A moto server of this test's own (the runbook creates aliases, roles, policies)."""
    server = KmsServer(tmp_path / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()


def act_as_ca(work: Path, pki: TestPKI) -> None:
    """Issue the code-signing certificate for release.csr into signing/, as a CA would."""
    csr = x509.load_pem_x509_csr((work / "release.csr").read_bytes())
    assert csr.is_signature_valid
    leaf = pki.intermediate.issue(None, csr.public_key(),  # type: ignore[arg-type]
                                  subject=csr.subject, eku=CODE_SIGNING)
    (work / "signing").mkdir()
    write_pem(work / "signing" / "release.pem", leaf)
    write_pem(work / "signing" / "intermediate.pem", pki.intermediate.cert)


@pytest.mark.posix  # bash, the AWS CLI and openssl
def test_runbook_commands_run_and_call_only_the_policys_actions(
    moto: KmsServer, pki: TestPKI, tsa: Any, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "dist").mkdir(parents=True)
    for name in ("t64.exe", "w32.exe"):
        peutil.copy_sample(peutil.LAUNCHERS[name], work / "dist")
    (work / "dist" / "README.txt").write_text("not a PE file\n")
    for name, document in json_files().items():
        (work / name).write_text(json.dumps(document))
    proxy = KmsProxy(moto.endpoint_url).start()
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_ENDPOINT_URL": moto.endpoint_url,  # the administrator's AWS CLI: straight to moto
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "KMSSIGN_ENDPOINT_URL": proxy.endpoint_url,  # kmssign: through the counting proxy
        "KMSSIGN_TIMESTAMP_URLS": tsa.url(),
    }
    # The runbook's verify trusts Microsoft's root program, as Windows does (a public CA's
    # certificate); the test's CA is not in it, so its root is given as a private CA's is.
    verify = "kmssign verify dist/ --require-timestamp"
    scripts = [body.replace(verify, f"{verify} --ca {pki.root_pem}") for _, body in blocks("sh")]
    assert len(scripts) >= 6 and any(verify in body for _, body in blocks("sh"))
    seen: Counter[str] = Counter()
    try:
        for script in scripts:
            before = Counter(proxy.calls)
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"
            made = Counter(proxy.calls) - before
            assert made == expected_calls(script, pe_files=2), (script, made)
            seen += made
            if (work / "release.csr").exists() and not (work / "signing").exists():
                act_as_ca(work, pki)
    finally:
        proxy.stop()
    policy_actions = set(json_files()["kmssign-policy.json"]["Statement"][0]["Action"])
    assert {f"kms:{operation}" for operation in seen} == policy_actions
    assert seen["Sign"] >= 2 + 2  # two CSRs and two files, at least

    # The replacement key's request carries the new key, which the alias now names.
    client = kms_client(moto.endpoint_url, "eu-central-1")
    new_key = client.get_public_key(KeyId="alias/release-signing")["PublicKey"]
    replacement = x509.load_pem_x509_csr((work / "replacement.csr").read_bytes())
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert replacement.public_key().public_bytes(der, spki) == new_key
    first = x509.load_pem_x509_csr((work / "release.csr").read_bytes())
    assert first.public_key().public_bytes(der, spki) != new_key
    assert replacement.public_key().key_size == 4096  # type: ignore[union-attr]
