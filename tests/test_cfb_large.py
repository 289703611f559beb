"""Large compound files, kept sparse on disk: a 1 GiB package rewritten in bounded memory
(#21 item 6: never read into memory), and a version 4 file big enough for DIFAT sectors,
read back by olefile."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import olefile
import pytest

from kmssign._internal.cfb.reader import CompoundFile
from tests.support.cfbgen import write_sparse

pytestmark = pytest.mark.posix  # sparse files and getrusage

REPO = Path(__file__).resolve().parent.parent
SMALL = {"\x05SummaryInformation": b"s" * 300, "tiny": b"t", "Edge": b"e" * 4095}
SIG = "\x05DigitalSignature"

# Runs in a fresh interpreter: open, rewrite into a sparse file (runs of zeros skipped
# with a seek, as the holes of the source are), report the peak RSS over the baseline.
SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from kmssign._internal.cfb.reader import CompoundFile
    from kmssign._internal.cfb.writer import rewrite

    class Sparse:
        def __init__(self, f):
            self.f = f
        def write(self, data):
            if data.count(0) == len(data):
                self.f.seek(len(data), 1)
            else:
                self.f.write(data)
            return len(data)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    src_path, dst_path = sys.argv[1:3]
    with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
        cf = CompoundFile.open(src, src_path)
        rewrite(src, cf, Sparse(dst), set_streams={"\\x05DigitalSignature": b"x" * 6000})
        dst.truncate()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_kib": peak - base}))
""")


def rewrite_sparse(src: Path, dst: Path) -> int:
    """Rewrite ``src`` into ``dst`` in a subprocess; its peak memory growth in KiB."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(dst)],
                            capture_output=True, text=True, check=False, cwd=REPO,
                            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["growth_kib"])


def check_output(src: Path, dst: Path, big: int, *, oracle: bool = True) -> None:
    """olefile (when ``oracle``: it takes half a minute over the FAT of a 1 GiB version 3
    file) and kmssign's reader agree on the rewritten file; the big stream reads as the
    zeros it was (in chunks), the small ones byte for byte."""
    if oracle:
        ole = olefile.OleFileIO(str(dst))
        try:
            assert sorted(ole.listdir()) == sorted([[n] for n in [*SMALL, "big", SIG]])
            assert ole.get_size("big") == big
            for name, data in SMALL.items():
                assert ole.openstream(name).read() == data
            assert ole.openstream(SIG).read() == b"x" * 6000
        finally:
            ole.close()
    with dst.open("rb") as f:
        cf = CompoundFile.open(f, str(dst))
        entry = cf.find(cf.root, "big")
        assert entry is not None and entry.size == big
        total = zeros = 0
        for piece in cf.read_stream(entry):
            total += len(piece)
            zeros += piece.count(0)
        assert total == zeros == big
        assert sorted(e.name for e in cf.children(cf.root)) == sorted([*SMALL, "big", SIG])
        for name, data in [*SMALL.items(), (SIG, b"x" * 6000)]:
            found = cf.find(cf.root, name)
            assert found is not None and b"".join(cf.read_stream(found)) == data
    assert dst.stat().st_size < src.stat().st_size + 64 * 1024


def test_one_gib_package_is_rewritten_in_bounded_memory(tmp_path: Path) -> None:
    src, dst = tmp_path / "big.msi", tmp_path / "signed.msi"
    size = (1 << 30) + 12345
    write_sparse(src, size, small=SMALL)
    assert int.from_bytes(_header(src)[72:76], "little") > 100  # DIFAT sectors: over 100
    growth = rewrite_sparse(src, dst)
    assert growth < 48 * 1024, f"peak memory grew by {growth} KiB"
    assert int.from_bytes(_header(dst)[72:76], "little") > 100
    check_output(src, dst, size, oracle=False)


def test_version_4_package_with_difat_sectors(tmp_path: Path) -> None:
    """109 FAT sectors of 4096 bytes cover 436 MiB: a bigger version 4 file needs the
    DIFAT."""
    src, dst = tmp_path / "big4.msi", tmp_path / "signed4.msi"
    size = 460 << 20
    write_sparse(src, size, version=4, small=SMALL)
    assert _header(src)[26] == 4 and int.from_bytes(_header(src)[72:76], "little") == 1
    rewrite_sparse(src, dst)
    assert _header(dst)[26] == 4 and int.from_bytes(_header(dst)[72:76], "little") == 1
    check_output(src, dst, size)


def _header(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(512)
