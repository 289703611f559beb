"""Property tests over generated PE files (tests/support/pegen.py), with pefile,
osslsigncode and ``kmssign verify`` as judges.

Each generated file is signed (its existing table, if any, replaced), sometimes given a
nested signature (--append), timestamped at signing or later (``kmssign timestamp``, the
loopback TSA), and verified; pefile must read every intermediate file as kmssign does.
Then single-byte mutations of the output must be refused by ``kmssign verify``: exit 1,
one line naming the file and the reason, no traceback, the file unchanged.

A failing case is printed as JSON and, under ``nox -s fuzz``, written to
tests/regressions/pe/<test>.json (tests/support/regressions.py); committed there,
``test_regressions_replay`` runs it on every ``nox -s tests``.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from kmssign._internal.pe.image import parse_pe
from kmssign._internal.pe.signedcopy import begin_signed_copy, finish_signed_copy
from kmssign.frontends.cli.main import main
from tests.support import pe_oracle, pegen, peutil
from tests.support.helpers import sign_args
from tests.support.pki import TestPKI
from tests.support.profiles import examples
from tests.support.regressions import kept, kept_on_failure
from tests.test_pefile_oracle import assert_agree


@dataclass(frozen=True)
class Mutation:
    """One change to the signed output. ``kind`` "flip" XORs one byte with ``xor`` in
    ``region``: "image" (the hashed part, the CheckSum field aside) or "table" (the
    certificate table); "truncate" cuts the file in ``region``; "append" adds ``xor``
    bytes after the table. ``at`` is taken modulo the region's length, so a mutation
    drawn before signing applies to any output."""

    region: str
    at: int
    xor: int
    kind: str = "flip"


@dataclass(frozen=True)
class Case:
    spec: pegen.PESpec
    digest: str = "sha256"
    timestamp: str = "none"  # "none", "at-signing", "later"
    append: bool = False
    mutations: list[Mutation] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Case:
        raw = json.loads(text)
        raw["spec"] = pegen.PESpec.from_json(json.dumps(raw["spec"]))
        raw["mutations"] = [Mutation(**m) for m in raw["mutations"]]
        return cls(**raw)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    return Case(
        spec=draw(pegen.pe_specs()),
        digest=draw(st.sampled_from(["sha256", "sha384", "sha512"])),
        timestamp=draw(st.sampled_from(["none", "at-signing", "later"])),
        append=draw(st.booleans()),
        mutations=draw(st.lists(
            st.builds(Mutation, st.sampled_from(["image", "table", "table"]),
                      st.integers(0, 1 << 20), st.integers(1, 255),
                      st.sampled_from(["flip", "flip", "flip", "truncate", "append"])),
            min_size=1, max_size=3,
        )),
    )


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def mutate(data: bytes, mutation: Mutation) -> tuple[bytes, int]:
    """``data`` changed as ``mutation`` says, and where."""
    image = parse_pe(io.BytesIO(data))
    if mutation.kind == "append":
        return data + bytes([mutation.xor]) * mutation.xor, len(data)
    if mutation.region == "table":
        start, length = image.cert_table_offset, image.cert_table_size
    else:
        start, length = 0, image.cert_table_offset - 4  # the CheckSum field taken out
    at = start + mutation.at % length
    if mutation.region == "image" and at >= image.checksum_offset:
        at += 4  # skip the CheckSum field: Authenticode does not cover it
    if mutation.kind == "truncate":
        return data[:at], at
    buf = bytearray(data)
    buf[at] ^= mutation.xor
    return bytes(buf), at


def run_case(case: Case, pki: TestPKI, tsa: Any, directory: Path) -> None:
    """Sign, append, timestamp, verify with every judge, then check the mutants."""
    path = directory / ("generated.dll" if case.spec.dll else "generated.exe")
    data = pegen.build(case.spec)
    path.write_bytes(data)
    assert_agree(data, "generated")

    ts = ["--timestamp-url", tsa.url("tsa")] if case.timestamp == "at-signing" else []
    steps = [["--no-skip-signed", *sign_args(pki.identity("rsa2048"), "--digest", case.digest,
                                             *ts)]]
    if case.append:
        steps.append(["--append", *sign_args(pki.identity("p256"), *ts)])
    for args in steps:
        code, out, err = cli("sign", str(path), *args)
        assert code == 0, err
        view = assert_agree(path.read_bytes(), f"after sign {args[0]}")
        assert view.stored_checksum == view.checksum
    if case.timestamp == "later":
        code, out, err = cli("timestamp", str(path), "--timestamp-url", tsa.url("tsa"))
        assert code == 0, err
        view = assert_agree(path.read_bytes(), "after timestamp")
        assert view.stored_checksum == view.checksum

    stamped = case.timestamp != "none"
    signed = path.read_bytes()
    verify = ["verify", str(path), "--ca", str(pki.root_pem)]
    if stamped:
        verify.append("--require-timestamp")
    code, out, err = cli(*verify)
    assert code == 0, err
    out = peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem if stamped else None)
    if case.append:
        assert out.count("Signature verification: ok") >= 2, out

    # The CheckSum field is outside Authenticode: changing it keeps the signature valid
    # (Windows checks it for drivers only; osslsigncode reports it, kmssign rewrites it).
    image = parse_pe(io.BytesIO(signed))
    other = bytearray(signed)
    other[image.checksum_offset] ^= 0x5A
    path.write_bytes(other)
    code, out, err = cli(*verify)
    assert code == 0, err

    for mutation in case.mutations:
        mutant, at = mutate(signed, mutation)
        path.write_bytes(mutant)
        code, out, err = cli(*verify)
        where = f"{mutation} at 0x{at:x}"
        assert code == 1, (where, out, err)
        assert "Traceback" not in out + err, where
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"failed: {path}: "), (where, err)
        assert path.read_bytes() == mutant, where
        if currently_in_test_context():
            event(f"mutant refused: {lines[0].split(': ', 2)[-1][:40]}")


@settings(max_examples=examples(30))
@given(pegen.pe_specs())
def test_generated_files_agree_with_pefile(spec: pegen.PESpec) -> None:
    """Generated files and their in-memory signed copies read the same in pefile and
    kmssign (no subprocess: many examples)."""
    with kept_on_failure("pe", "agree", Case(spec).to_json()):
        data = pegen.build(spec)
        assert_agree(data, "generated")
        f = io.BytesIO(data)
        out = io.BytesIO()
        digest, state = begin_signed_copy(f, parse_pe(f), "sha256", out)
        finish_signed_copy(out, state, pegen.FAKE_DER)
        signed = out.getvalue()
        view = assert_agree(signed, "signed copy")
        assert view.stored_checksum == view.checksum
        assert pe_oracle.linear_digest(signed, view) == digest
        (entry,) = pe_oracle.spec_entries(signed, *view.cert_table)
        assert entry.content == pegen.FAKE_DER + bytes(-len(pegen.FAKE_DER) % 8)


@pytest.mark.osslsigncode
@settings(max_examples=examples(12))
@given(case=cases())
def test_generated_files_sign_append_timestamp_verify(case: Case, pki: TestPKI, tsa) -> None:
    with kept_on_failure("pe", "sign", case.to_json()), tempfile.TemporaryDirectory() as tmp:
        run_case(case, pki, tsa, Path(tmp))


def _regressions() -> list[Path]:
    return kept("pe")


@pytest.mark.osslsigncode
@pytest.mark.parametrize("path", _regressions(), ids=lambda p: p.stem)
def test_regressions_replay(path: Path, pki: TestPKI, tsa, tmp_path: Path) -> None:
    """Every case kept from an earlier failure still passes."""
    run_case(Case.from_json(path.read_text()), pki, tsa, tmp_path)


def test_regressions_are_kept() -> None:
    assert _regressions(), "no regression cases in tests/regressions/pe"
    for path in _regressions():
        case = Case.from_json(path.read_text())
        assert case.to_json() == Case.from_json(case.to_json()).to_json()
