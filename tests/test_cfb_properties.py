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
import json
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import olefile
import pytest
from hypothesis import given, settings
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
from tests.support.regressions import kept, kept_on_failure

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


# A tree as JSON (kept as regression files): ["stream", name, size, seed] or
# ["storage", name, clsid hex, [children]]
Node = list[Any]


def _key(node: Node) -> tuple[int, bytes]:
    return cfb_key(node[1])


STREAMS = st.tuples(st.just("stream"), NAMES, SIZES, st.integers(0, 1 << 16)).map(list)


def _storages(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.tuples(st.just("storage"), NAMES, st.binary(min_size=16, max_size=16).map(
        bytes.hex), st.lists(children, max_size=5, unique_by=_key)).map(list)


NODES = st.recursive(STREAMS, _storages, max_leaves=20)


def built(nodes: list[Node]) -> list[Stream | Storage]:
    return [_stream(n[1], n[2], n[3]) if n[0] == "stream"
            else Storage(n[1], built(n[3]), bytes.fromhex(n[2])) for n in nodes]


@dataclass(frozen=True)
class Layout:
    """A generated compound file: the arguments of cfbgen.generate, the tree as JSON."""

    version: int
    tree: list[Node]
    seed: int | None = None
    free: int = 0
    extra_fat: int = 0

    def build(self) -> bytes:
        return generate(built(self.tree), version=self.version, seed=self.seed,
                        free=self.free, extra_fat=self.extra_fat).data


@st.composite
def trees(draw: st.DrawFn) -> list[Node]:
    """A root's children: drawn nodes, and sometimes many small streams besides."""
    nodes = draw(st.lists(NODES, max_size=8, unique_by=_key))
    many = draw(st.sampled_from([0, 0, 0, 40, 150]))
    nodes += [["stream", f"many{i}", i * 37 % 300, i] for i in range(many)]
    seen: set[tuple[int, bytes]] = set()
    unique = []
    for node in nodes:  # signature streams are what the tests add; names unique
        if _key(node) not in seen and node[1].upper() not in (SIG.upper(), SIG_EX.upper()):
            seen.add(_key(node))
            unique.append(node)
    return unique


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    version = draw(st.sampled_from([3, 4]))
    seed = draw(st.one_of(st.none(), st.integers(0, 1 << 16)))
    return Layout(
        version, draw(trees()), seed,
        free=draw(st.integers(0, 3)) if seed is not None else 0,
        extra_fat=draw(st.sampled_from([0, 0, 0, 0, 110])) if version == 3 else 0,
    )


@dataclass(frozen=True)
class Case:
    """One property-test case: a layout and what is done to it (each test reads its own
    fields). ``mutations``: (in a stream?, where, XOR value)."""

    test: str  # "rewrite" or "package"
    layout: Layout
    signature: int = 0
    ex: bool = False
    append: bool = False
    timestamp: str = "none"
    mutations: list[tuple[bool, int, int]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Case:
        raw = json.loads(text)
        raw["layout"] = Layout(**raw["layout"])
        raw["mutations"] = [tuple(m) for m in raw["mutations"]]
        return cls(**raw)


MUTATIONS = st.lists(st.tuples(st.booleans(), st.integers(0, 1 << 24), st.integers(1, 255)),
                     min_size=1, max_size=3)


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


def check_rewrite(case: Case) -> None:
    data = case.layout.build()
    before = ole_tree(data)
    assert kmssign_tree(data) == before
    written = {SIG: random.Random(case.signature).randbytes(case.signature)}
    if case.ex:
        written[SIG_EX] = bytes(range(32))
    added = rewritten(data, set_streams=written)
    assert_rewritten(data, added, written)
    assert kmssign_tree(added) == ole_tree(added)
    removed = rewritten(added, set_streams={}, remove=list(written))
    assert ole_tree(removed) == before
    for _, at, xor in case.mutations:
        mutant = bytearray(added)
        mutant[at % len(mutant)] ^= xor
        with contextlib.suppress(CompoundFileError):
            read_everything(bytes(mutant))


@settings(max_examples=examples(25))
@given(layout=layouts(), signature=SIZES, ex=st.booleans(), mutations=MUTATIONS)
def test_generated_files_rewritten_read_back_by_olefile(
    layout: Layout, signature: int, ex: bool, mutations: list[tuple[bool, int, int]]
) -> None:
    case = Case("rewrite", layout, signature=signature, ex=ex, mutations=mutations)
    with kept_on_failure("cfb", "rewrite", case.to_json()):
        check_rewrite(case)


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


def check_package(case: Case, pki: TestPKI, tsa: Any, directory: Path) -> None:
    """As an MSI package (the generator's root class id): signed, nested, timestamped,
    verified by osslsigncode and kmssign; olefile reads the same entries plus the
    signature; mutants refused."""
    data = case.layout.build()
    path = directory / "generated.msi"
    path.write_bytes(data)
    code, out, err = cli("sign", str(path), "-q", *sign_args(pki.identity("rsa2048")))
    assert code == 0, err
    if case.append:
        code, out, err = cli("sign", str(path), "-q", "--append",
                             *sign_args(pki.identity("p256")))
        assert code == 0, err
    if case.timestamp == "later":
        code, out, err = cli("timestamp", str(path), "-q", "--timestamp-url", tsa.url("tsa"))
        assert code == 0, err
    signed = path.read_bytes()
    tree = ole_tree(signed)
    assert {k: v for k, v in tree.items() if k != (SIG,)} == ole_tree(data)
    assert tree[(SIG,)][0] == "stream"
    stamped = case.timestamp != "none"
    verify = ["verify", str(path), "--ca", str(pki.root_pem)]
    if stamped:
        verify.append("--require-timestamp")
    code, out, err = cli(*verify)
    assert code == 0, err
    peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem if stamped else None)

    empty = hashlib.sha256(b"").hexdigest()
    streams = sorted(list(p) for p, v in tree.items() if v[0] == "stream" and v[2] != empty)
    for in_stream, at, xor in case.mutations:
        path.write_bytes(signed)
        if in_stream:
            stream = streams[at % len(streams)]
            _flip_in_stream(path, stream, at // len(streams), xor)
            _refused(*cli(*verify), path)
        else:
            mutant = bytearray(signed)
            mutant[at % len(mutant)] ^= xor
            path.write_bytes(mutant)
            code, out, err = cli(*verify)
            if code != 0:
                _refused(code, out, err, path)
            else:  # a byte no digest covers (slack, times, names): same content
                assert hashed_view(bytes(mutant)) == hashed_view(signed)


@pytest.mark.osslsigncode
@settings(max_examples=examples(4))
@given(layout=layouts(), append=st.booleans(), timestamp=st.sampled_from(["none", "later"]),
       mutations=MUTATIONS)
def test_generated_packages_sign_verify(
    layout: Layout, append: bool, timestamp: str, mutations: list[tuple[bool, int, int]],
    pki: TestPKI, tsa: Any,
) -> None:
    case = Case("package", layout, append=append, timestamp=timestamp, mutations=mutations)
    with kept_on_failure("cfb", "package", case.to_json()), \
            tempfile.TemporaryDirectory() as tmp:
        check_package(case, pki, tsa, Path(tmp))


@pytest.mark.osslsigncode
@pytest.mark.parametrize("path", kept("cfb"), ids=lambda p: p.stem)
def test_regressions_replay(path: Path, pki: TestPKI, tsa: Any, tmp_path: Path) -> None:
    """Every kept case still passes (tests/regressions/cfb/)."""
    case = Case.from_json(path.read_text())
    if case.test == "rewrite":
        check_rewrite(case)
    else:
        check_package(case, pki, tsa, tmp_path)


def test_regressions_are_kept() -> None:
    cases = [Case.from_json(p.read_text()) for p in kept("cfb")]
    assert {c.test for c in cases} == {"rewrite", "package"}
    assert all(Case.from_json(c.to_json()) == c for c in cases)
