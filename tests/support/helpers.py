"""Small helpers shared by the CLI-level tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from kmssign._internal.authenticode.parse import ParsedSignature
from kmssign._internal.authenticode.verify import read_signatures
from kmssign._internal.engine.formats import open_signable
from kmssign._internal.engine.verifying import verify_file
from kmssign._internal.pe.image import parse_pe
from kmssign.frontends.cli.main import main
from kmssign.signers import DigestName, KeyType, Signer
from tests.support.pki import SigningIdentity, TestPKI


def sign_args(identity: SigningIdentity, *extra: str) -> list[str]:
    """Arguments of ``kmssign sign`` for a key-file identity (no timestamp unless given)."""
    args = [
        "--key-file", str(identity.key_path),
        "--cert", str(identity.cert_path),
        "--chain", str(identity.chain_path),
    ]
    if "--timestamp-url" not in extra and "--timestamp" not in extra:
        args.append("--no-timestamp")
    return [*args, *extra]


def run_cli(capsys: object, *argv: str) -> tuple[int, str, str]:
    """Run ``kmssign`` in-process; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()  # type: ignore[attr-defined]
    return code, captured.out, captured.err


def snapshot(paths: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in paths.items()}


class DelegatingSigner:
    """A Signer that forwards to another; tests subclass it to count or to corrupt."""

    def __init__(self, inner: Signer) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def key_type(self) -> KeyType:
        return self.inner.key_type

    def public_key_der(self) -> bytes:
        return self.inner.public_key_der()

    def digest_for(self, requested: DigestName) -> DigestName:
        return self.inner.digest_for(requested)

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        return self.inner.sign(data, digest)


def primary_signature(path: Path) -> ParsedSignature:
    """The file's primary Authenticode signature, parsed (its nested ones in ``.nested``)."""
    with open(path, "rb") as f:
        return read_signatures(open_signable(f))[0]


def signature_states(path: Path, pki: TestPKI) -> list[tuple[str, bool]]:
    """(digest, timestamped) of every signature, primary first, as ``kmssign verify``
    checks them against the test root."""
    verified = verify_file(path, roots=[pki.root.cert], tsa_roots=[pki.root.cert])
    return [(s.digest, s.timestamp is not None) for s in verified.signatures]


def break_signature(path: Path, how: str) -> bytes:
    """Damage a signed file the way the skip-signed check must notice; return the bytes.

    ``signature``: one bit of the primary signature's value; ``nested``: one bit of the
    first nested signature's value; ``content``: one byte of the image (a patched DLL).
    """
    data = bytearray(path.read_bytes())
    primary = primary_signature(path)
    if how == "content":
        with open(path, "rb") as f:
            at = parse_pe(f).image_end // 2
    else:
        value = primary.signature if how == "signature" else primary.nested[0].signature
        at = data.index(value) + len(value) // 2
    data[at] ^= 0x01
    path.write_bytes(data)
    return bytes(data)


BUDGET = 10.0  # seconds per CLI call; each takes well under 0.5 s, and took minutes


@contextmanager
def budget(what: str, seconds: float = BUDGET) -> Iterator[None]:
    """Fail (at once, not after minutes) when the block runs longer than ``seconds``."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise AssertionError(f"{what} took longer than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
