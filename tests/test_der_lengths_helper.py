"""tests/support/der_lengths.py itself: the outline of a signature, files with chosen lengths, and
the layout of ``--append``. No timestamps here: without a token in the tree asn1crypto's
re-encoding of a 0x80 header is quick, so these stay fast on code that still has it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import der_lengths, peutil
from tests.support.helpers import sign_args
from tests.support.pki import TestPKI


def _kmssign(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*der_lengths.kmssign_command(), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_outline_names_every_part_of_a_signature(
    samples: dict[str, Path], pki: TestPKI
) -> None:
    path = samples["t64.exe"]
    assert _kmssign("sign", str(path), *sign_args(pki.identity("rsa2048"))).returncode == 0
    (der,) = der_lengths.signatures_in(path)
    nodes = der_lengths.outline(der)
    assert nodes[0].path == "content_info" and nodes[0].end == len(der)
    for name in ("signed_data", "certificates", "signer_info", "signed_attrs"):
        node = der_lengths.find(der, name)
        assert der[node.offset : node.offset + len(node.header)] == node.header
    # the signer's certificate and the intermediate, each one node
    certificates = [n for n in nodes if n.path.endswith("]") and "/certificate[" in n.path
                    and n.path.count("[") == 1]
    assert len(certificates) == 2
    assert der_lengths.find(der, "signature").length == 256  # RSA 2048
    with pytest.raises(KeyError):
        der_lengths.find(der, "unsigned_attrs")  # no timestamp, nothing nested


@pytest.mark.parametrize(
    ("target", "low_byte"), [("content_info", 0x80), ("signer_info", 0x7F), ("signed_attrs", 0x81)]
)
def test_make_signed_puts_a_length_on_the_low_byte_asked_for(
    target: str, low_byte: int, samples: dict[str, Path], pki: TestPKI, tmp_path: Path
) -> None:
    sign = der_lengths.kmssign_signer(sign_args(pki.identity("rsa2048")))
    made = der_lengths.make_signed(
        samples["w32.exe"], tmp_path / "made.exe", target=target, low_byte=low_byte, sign=sign
    )
    node = der_lengths.find(made.der, target)
    assert node.low_byte == low_byte and node.length & 0xFF == low_byte
    assert (node in made.forcing) == (low_byte == 0x80)
    assert der_lengths.signatures_in(made.path) == [made.der]
    proc = _kmssign("verify", str(made.path), "--ca", str(pki.root_pem))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.osslsigncode
def test_nest_lays_out_an_append_as_kmssign_does(
    samples: dict[str, Path], pki: TestPKI, tmp_path: Path
) -> None:
    identity = pki.identity("rsa2048")
    theirs = tmp_path / "theirs.exe"
    peutil.osslsigncode_sign(samples["t64.exe"], theirs, identity, "-ac", str(identity.chain_path))
    alone, appended = tmp_path / "alone.exe", tmp_path / "appended.exe"
    args = sign_args(identity)  # RSA PKCS#1 v1.5: the same bytes for the same input
    for extra, out in (("--no-skip-signed", alone), ("--append", appended)):
        proc = _kmssign("sign", str(theirs), extra, "-o", str(out), *args)
        assert proc.returncode == 0, proc.stderr
    (outer,) = der_lengths.signatures_in(theirs)
    (ours,) = der_lengths.signatures_in(alone)
    (result,) = der_lengths.signatures_in(appended)
    assert der_lengths.nest(outer, ours) == result
    assert der_lengths.nested_signatures(result) == [ours]
    assert [n.path for n in der_lengths.rewritten_by_nest(result)] == list(
        der_lengths.NEST_REWRITES
    )
