"""Property tests over generated compound files (tests/support/cfbgen.py, a writer
independent of kmssign's), with olefile, osslsigncode and ``kmssign verify`` as judges.

Trees of storages and streams are drawn (both sector sizes, many streams, sizes around
the 4096-byte mini stream cutoff, nested storages with class ids, scattered sectors,
free sectors, DIFAT sectors in small files); kmssign's reader must list and read them as
olefile does, and its writer's output (signature streams added, replaced, removed) must
read back through olefile holding the same entries plus those streams. As MSI packages
they are signed, nested, timestamped and verified; a changed byte of any stream is
refused, and a changed byte anywhere else is refused or leaves every hashed stream and
class id as it was. Nothing but a one-line refusal: no traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import tempfile
from pathlib import Path
from typing import Any

import olefile
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from kmssign._internal.cfb.reader import CompoundFile
from kmssign._internal.cfb.writer import rewrite
from kmssign.errors import CompoundFileError
from kmssign.frontends.cli.main import main
from tests.support import peutil
from tests.support.cfbcheck import Tree, assert_rewritten, ole_tree
from tests.support.cfbgen import Storage, Stream, cfb_key, generate
from tests.support.helpers import sign_args
from tests.support.pki import TestPKI
from tests.support.profiles import examples

SIG = "\x05DigitalSignature"
SIG_EX = "\x05MsiDigitalSignatureEx"

_ALPHABET = st.one_of(
    st.sampled_from("abcXYZ019_.- äßДж"),
    st.characters(min_codepoint=0x3800, max_codepoint=0x4840),  # MSI's packed names
)
NAMES = st.text(_ALPHABET, min_size=1, max_size=31).filter(lambda n: not n.startswith(" "))
SIZES = st.one_of(
    st.sampled_from([0, 1, 63, 64, 65, 4095, 4096, 4097]),  # the mini stream cutoff
    st.integers(0, 9000),
)


def _stream(name: str, size: int, seed: int) -> Stream:
    return Stream(name, random.Random(seed).randbytes(size))


STREAMS = st.builds(_stream, NAMES, SIZES, st.integers(0, 1 << 16))


def _key(node: Stream | Storage) -> tuple[int, bytes]:
    return cfb_key(node.name)


def _storages(children: st.SearchStrategy[Stream | Storage]) -> st.SearchStrategy[Storage]:
    return st.builds(Storage, NAMES, st.lists(children, max_size=5, unique_by=_key),
                     st.binary(min_size=16, max_size=16))


NODES = st.recursive(STREAMS, _storages, max_leaves=20)


@st.composite
def trees(draw: st.DrawFn) -> list[Stream | Storage]:
    """A root's children: drawn nodes, and sometimes many small streams besides."""
    nodes = draw(st.lists(NODES, max_size=8, unique_by=_key))
    many = draw(st.sampled_from([0, 0, 0, 40, 150]))
    nodes += [_stream(f"many{i}", i * 37 % 300, i) for i in range(many)]
    seen: set[tuple[int, bytes]] = set()
    unique = []
    for node in nodes:  # signature streams are what the tests add; names unique
        if _key(node) not in seen and node.name.upper() not in (SIG.upper(), SIG_EX.upper()):
            seen.add(_key(node))
            unique.append(node)
    return unique


@st.composite
def layouts(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([3, 4]))
    seed = draw(st.one_of(st.none(), st.integers(0, 1 << 16)))
    layout = generate(
        draw(trees()), version=version, seed=seed,
        free=draw(st.integers(0, 3)) if seed is not None else 0,
        extra_fat=draw(st.sampled_from([0, 0, 0, 0, 110])) if version == 3 else 0,
    )
    return layout.data


def kmssign_tree(data: bytes) -> Tree:
    """ole_tree's view, by kmssign's reader."""
    cf = CompoundFile.open(io.BytesIO(data), "generated")
    mine: Tree = {}
    pending = [((), cf.root)]
    while pending:
        path, entry = pending.pop()
        if entry.kind == "stream":
            digest = hashlib.sha256(b"".join(cf.read_stream(entry))).hexdigest()
            mine[path] = ("stream", bytes(16), digest)
        else:
            mine[path] = ("root" if not path else "storage", entry.clsid, "")
        pending.extend(((*path, c.name), c) for c in cf.children(entry))
    return mine


def rewritten(data: bytes, **changes: Any) -> bytes:
    src = io.BytesIO(data)
    out = io.BytesIO()
    rewrite(src, CompoundFile.open(src, "generated"), out, **changes)
    return out.getvalue()


def read_everything(data: bytes) -> None:
    """Open and read every stream; a CompoundFileError is the only way to refuse."""
    cf = CompoundFile.open(io.BytesIO(data), "mutant")
    pending = [cf.root]
    while pending:
        entry = pending.pop()
        if entry.kind == "stream":
            for _ in cf.read_stream(entry):
                pass
        pending.extend(cf.children(entry))


@settings(max_examples=examples(25))
@given(data=layouts(), signature=SIZES, ex=st.booleans(), flip=st.tuples(
    st.integers(0, 1 << 24), st.integers(1, 255)))
def test_generated_files_rewritten_read_back_by_olefile(
    data: bytes, signature: int, ex: bool, flip: tuple[int, int]
) -> None:
    before = ole_tree(data)
    assert kmssign_tree(data) == before
    written = {SIG: random.Random(signature).randbytes(signature)}
    if ex:
        written[SIG_EX] = bytes(range(32))
    added = rewritten(data, set_streams=written)
    assert_rewritten(data, added, written)
    assert kmssign_tree(added) == ole_tree(added)
    removed = rewritten(added, set_streams={}, remove=list(written))
    assert ole_tree(removed) == before

    at, xor = flip
    mutant = bytearray(added)
    mutant[at % len(mutant)] ^= xor
    with contextlib.suppress(CompoundFileError):
        read_everything(bytes(mutant))


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def hashed_view(data: bytes) -> list[tuple[str, bytes, str]]:
    """What the MSI digest covers, names aside (they are not hashed): each stream's and
    storage's kind, class id and content, in no particular order; the signature's too."""
    return sorted(value for path, value in ole_tree(data).items())


def _flip_in_stream(path: Path, stream: list[str], at: int, xor: int) -> None:
    with olefile.OleFileIO(str(path), write_mode=True) as ole:
        content = bytearray(ole.openstream(stream).read())
        content[at % len(content)] ^= xor
        ole.write_stream(stream, bytes(content))


def _refused(code: int, out: str, err: str, path: Path) -> str:
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"failed: {path}: "), err
    return lines[0]


@pytest.mark.osslsigncode
@settings(max_examples=examples(4))
@given(data=layouts(), append=st.booleans(), timestamp=st.sampled_from(["none", "later"]),
       mutations=st.lists(st.tuples(st.booleans(), st.integers(0, 1 << 24),
                                    st.integers(1, 255)), min_size=1, max_size=3))
def test_generated_packages_sign_verify(
    data: bytes, append: bool, timestamp: str, mutations: list[tuple[bool, int, int]],
    pki: TestPKI, tsa: Any,
) -> None:
    """As MSI packages (the generator's root class id): signed, nested, timestamped,
    verified by osslsigncode and kmssign; olefile reads the same entries plus the
    signature; mutants refused."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.msi"
        path.write_bytes(data)
        code, out, err = cli("sign", str(path), "-q", *sign_args(pki.identity("rsa2048")))
        assert code == 0, err
        if append:
            code, out, err = cli("sign", str(path), "-q", "--append",
                                 *sign_args(pki.identity("p256")))
            assert code == 0, err
        if timestamp == "later":
            code, out, err = cli("timestamp", str(path), "-q", "--timestamp-url", tsa.url("tsa"))
            assert code == 0, err
        signed = path.read_bytes()
        tree = ole_tree(signed)
        assert {k: v for k, v in tree.items() if k != (SIG,)} == ole_tree(data)
        assert tree[(SIG,)][0] == "stream"
        verify = ["verify", str(path), "--ca", str(pki.root_pem)]
        if timestamp != "none":
            verify.append("--require-timestamp")
        code, out, err = cli(*verify)
        assert code == 0, err
        peutil.osslsigncode_verify(path, pki.root_pem,
                                   tsa_ca=pki.root_pem if timestamp != "none" else None)

        streams = sorted(list(p) for p, v in tree.items() if v[0] == "stream" and v[2] != (
            hashlib.sha256(b"").hexdigest()))
        for in_stream, at, xor in mutations:
            path.write_bytes(signed)
            if in_stream:
                stream = streams[at % len(streams)]
                note(f"flip in stream {stream!r}")
                _flip_in_stream(path, stream, at // len(streams), xor)
                _refused(*cli(*verify), path)
            else:
                mutant = bytearray(signed)
                mutant[at % len(mutant)] ^= xor
                path.write_bytes(mutant)
                note(f"flip at 0x{at % len(mutant):x}")
                code, out, err = cli(*verify)
                if code != 0:
                    _refused(code, out, err, path)
                else:  # a byte no digest covers (slack, times, names): same content
                    assert hashed_view(bytes(mutant)) == hashed_view(signed)
