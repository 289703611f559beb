"""PyInstaller integration: real builds, a real Windows onefile exe under wine, the CLI.

The fast tests drive ``sign_bundled``/``sign_outputs`` with PyInstaller's build
configuration set by hand; the ``slow`` ones run PyInstaller (Linux output here), the
Windows bootloader from PyInstaller's win_amd64 wheel, and wine64.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kmssign._internal.pe.image import parse_pe
from kmssign._internal.signers.local import KeyFileSigner
from kmssign.frontends.cli.main import build_parser, main
from kmssign.pyinstaller import CACHE_DIR, sign_bundled, sign_outputs
from kmssign.signers import DigestName
from tests.support import peutil
from tests.support.fixtures_pyinstaller import (
    OK,
    TRUST_E_BAD_DIGEST,
    Check,
    Wine,
    run_kmssign,
    run_pyinstaller,
)
from tests.support.helpers import DelegatingSigner, break_signature
from tests.support.kms_proxy import KmsProxy
from tests.support.pki import SigningIdentity, TestPKI

APP = """\
import hashlib, os, sys
base = getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(base, "lib.dll"), "rb") as f:
    print("app ran; lib.dll sha256", hashlib.sha256(f.read()).hexdigest())
"""

SPEC = """\
import kmssign.pyinstaller as kmssign_pyi
a = Analysis(["app.py"], binaries={binaries!r}, datas={datas!r})
kmssign_pyi.sign_bundled(a)
pyz = PYZ(a.pure)
{targets}
"""
ONEDIR = """\
exe = EXE(pyz, a.scripts, [], exclude_binaries=True, name="app")
coll = COLLECT(exe, a.binaries, a.datas, name="app")
kmssign_pyi.sign_outputs(coll)
"""
ONEFILE = """\
exe = EXE(pyz, a.scripts, a.binaries, a.datas, name="app")
kmssign_pyi.sign_outputs(exe)
"""
BINARIES = [("lib.dll", "."), ("vendor.dll", ".")]
DATAS = [("launcher.exe", "tools"), ("notes.txt", ".")]


# --------------------------------------------------------------------------- helpers


def _toml_list(paths: list[str]) -> str:
    return "[" + ", ".join(f'"{p}"' for p in paths) + "]"


def key_file_settings(identity: SigningIdentity, tsa_url: str | None) -> str:
    lines = [
        f'key-file = "{identity.key_path}"',
        f'certificate = "{identity.cert_path}"',
        f"chain = {_toml_list([str(identity.chain_path)])}",
    ]
    lines.append(f"timestamp-urls = {_toml_list([tsa_url])}" if tsa_url else 'timestamp = "off"')
    return "\n".join(lines)


@pytest.fixture
def project(
    tmp_path: Path, pki: TestPKI, sample_sources: dict[str, Path]
) -> Callable[[str], Path]:
    """Factory: a throwaway PyInstaller project with [tool.kmssign] = ``settings``.

    Holds lib.dll (mingw-built, or pip's t64.exe renamed when mingw is absent),
    launcher.exe (t64.exe), vendor.dll (already signed by a vendor) and notes.txt.
    """

    def make(settings: str) -> Path:
        root = tmp_path / "proj"
        root.mkdir()
        lib = sample_sources.get("lib.dll", peutil.LAUNCHERS["t64.exe"])
        peutil.copy_sample(lib, root, "lib.dll")
        peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], root, "launcher.exe")
        peutil.osslsigncode_sign(peutil.LAUNCHERS["w32.exe"], root / "vendor.dll",
                                 pki.identity("p256"))
        (root / "notes.txt").write_text("not a PE file\n")
        (root / "app.py").write_text(APP)
        (root / "pyproject.toml").write_text(f"[tool.kmssign]\n{settings}\n")
        return root

    return make


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSSIGN_")}
    env.update(extra)
    return env


def write_spec(root: Path, targets: str) -> Path:
    spec = root / "app.spec"
    spec.write_text(SPEC.format(binaries=BINARIES, datas=DATAS, targets=targets))
    return spec


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_signed(path: Path) -> bool:
    with open(path, "rb") as f:
        return parse_pe(f).has_certificate_table


class CountingSigner(DelegatingSigner):
    """A key-file signer that counts its signatures."""

    def __init__(self, identity: SigningIdentity) -> None:
        super().__init__(KeyFileSigner.from_file(identity.key_path))
        self.calls = 0

    def sign(self, data: bytes, digest: DigestName) -> bytes:
        self.calls += 1
        return self.inner.sign(data, digest)


@pytest.fixture(autouse=True)
def outside_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PyInstaller build is running (an in-process one may have left CONF set)."""
    from PyInstaller.config import CONF

    monkeypatch.delitem(CONF, "spec", raising=False)
    monkeypatch.delitem(CONF, "workpath", raising=False)
    monkeypatch.delenv("KMSSIGN_DISABLE", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def in_build(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], Path]:
    """Pretend a PyInstaller build of ``<root>/app.spec`` is running; return its workpath."""
    from PyInstaller.config import CONF

    monkeypatch.delenv("KMSSIGN_DISABLE", raising=False)

    def enter(root: Path) -> Path:
        workpath = root / "build" / "app"
        monkeypatch.setitem(CONF, "spec", str(root / "app.spec"))
        monkeypatch.setitem(CONF, "workpath", str(workpath))
        return workpath

    return enter


def fake_analysis(root: Path) -> SimpleNamespace:
    """TOC lists shaped like PyInstaller 6's (dest_name, src_name, typecode)."""
    return SimpleNamespace(
        binaries=[
            ("lib.dll", str(root / "lib.dll"), "BINARY"),
            ("vendor.dll", str(root / "vendor.dll"), "BINARY"),
            ("liblink.dll", "lib.dll", "SYMLINK"),
        ],
        datas=[
            ("tools/launcher.exe", str(root / "launcher.exe"), "DATA"),
            ("notes.txt", str(root / "notes.txt"), "DATA"),
            ("base_library.zip", str(root / "missing.zip"), "DATA"),
        ],
    )


# --------------------------------------------------------------------------- fast tests


@pytest.mark.osslsigncode
def test_sign_bundled_swaps_pe_entries_and_reuses_signed_copies(
    project: Callable[[str], Path], in_build: Callable[[Path], Path], pki: TestPKI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    identity = pki.identity("rsa2048")
    root = project(key_file_settings(identity, None))
    workpath = in_build(root)
    signer = CountingSigner(identity)
    before = {name: sha256(root / name) for name in ("lib.dll", "launcher.exe", "vendor.dll")}

    analysis = fake_analysis(root)
    binaries, datas = analysis.binaries, analysis.datas
    with caplog.at_level(logging.INFO, logger="kmssign"):
        report = sign_bundled(analysis, signer=signer)
    # the one line of every front end: signer and digest (no timestamp in this build)
    assert "kmssign: signed: lib.dll (kmssign Test Signer rsa2048, sha256, no timestamp)" \
        in caplog.messages, caplog.messages

    assert analysis.binaries is binaries and analysis.datas is datas  # changed in place
    assert signer.calls == 2
    assert report.count("signed") == 2
    lib, vendor, link = analysis.binaries
    launcher, notes, zipped = analysis.datas
    for dest, src, typecode in (lib, launcher):
        copy = Path(src)
        assert copy.is_relative_to(workpath / CACHE_DIR) and copy.name == Path(dest).name
        assert typecode in ("BINARY", "DATA")
        assert is_signed(copy)
        peutil.osslsigncode_verify(copy, pki.root_pem)
    assert vendor == ("vendor.dll", str(root / "vendor.dll"), "BINARY")  # vendor-signed: kept
    assert link == ("liblink.dll", "lib.dll", "SYMLINK")
    assert notes == ("notes.txt", str(root / "notes.txt"), "DATA")
    assert zipped == ("base_library.zip", str(root / "missing.zip"), "DATA")
    assert before == {n: sha256(root / n) for n in before}  # sources untouched

    again = fake_analysis(root)
    report = sign_bundled(again, signer=signer)
    assert signer.calls == 2  # nothing signed again
    assert again.binaries == analysis.binaries and again.datas == analysis.datas
    assert report.count("signed") == 0 and report.count("skipped") == 3

    with open(root / "lib.dll", "ab") as f:  # a changed source is signed again
        f.write(b"\0" * 8)
    changed = fake_analysis(root)
    sign_bundled(changed, signer=signer)
    assert signer.calls == 3
    assert changed.binaries[0][1] != lib[1] and changed.datas[0] == launcher


@pytest.mark.osslsigncode
def test_sign_bundled_honours_exclude_and_skip_signed(
    project: Callable[[str], Path], in_build: Callable[[Path], Path], pki: TestPKI
) -> None:
    identity = pki.identity("rsa2048")
    root = project(key_file_settings(identity, None) + '\nexclude = ["tools/*"]')
    in_build(root)
    signer = CountingSigner(identity)
    analysis = fake_analysis(root)
    sign_bundled(analysis, signer=signer, skip_signed=False)
    assert signer.calls == 2  # lib.dll and the vendor DLL (re-signed); launcher excluded
    assert analysis.datas[0][1] == str(root / "launcher.exe")
    vendor_copy = Path(analysis.binaries[1][1])
    assert vendor_copy != root / "vendor.dll"
    out = peutil.osslsigncode_verify(vendor_copy, pki.root_pem)
    assert "kmssign Test Signer rsa2048" in out


@pytest.mark.osslsigncode
def test_overrides_win_over_pyproject_and_use_kebab_names(
    project: Callable[[str], Path], in_build: Callable[[Path], Path], pki: TestPKI
) -> None:
    root = project('key-file = "no-such.key"\ncertificate = "no-such.crt"\ntimestamp = "off"')
    in_build(root)
    identity = pki.identity("p384")
    analysis = fake_analysis(root)
    sign_bundled(
        analysis,
        key_file=identity.key_path,
        **{"certificate": identity.cert_path, "chain": [identity.chain_path],
           "description": "kmssign test app"},
    )
    out = peutil.osslsigncode_verify(Path(analysis.binaries[0][1]), pki.root_pem)
    assert "kmssign Test Signer p384" in out and "kmssign test app" in out


@pytest.mark.osslsigncode
def test_settings_problems_end_the_build_with_one_line(
    project: Callable[[str], Path], in_build: Callable[[Path], Path]
) -> None:
    root = project('timestamp = "off"\ndigest = "md5"')
    in_build(root)
    with pytest.raises(SystemExit) as caught:
        sign_bundled(fake_analysis(root))
    message = str(caught.value.code)
    assert message.startswith("kmssign: error: ") and "\n" not in message
    assert "tool.kmssign.digest must be one of sha256, sha384, sha512" in message

    (root / "pyproject.toml").write_text('[tool.kmssign]\ntimestamp = "off"\n')
    with pytest.raises(SystemExit) as caught:
        sign_bundled(fake_analysis(root))
    assert str(caught.value.code) == (
        "kmssign: error: no signing key: set key-id (an AWS KMS key) or key-file; "
        "no certificate: set certificate (PEM, DER or .p7b)"
    )


def test_sign_bundled_outside_a_build_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit, match=r"^kmssign: error: sign_bundled\(\) must be called"):
        sign_bundled(SimpleNamespace(binaries=[], datas=[]))


@pytest.mark.osslsigncode
def test_disable_variable_turns_everything_into_one_line(
    project: Callable[[str], Path], in_build: Callable[[Path], Path],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    root = project('timestamp = "off"')  # no key: would fail if anything ran
    in_build(root)
    monkeypatch.setenv("KMSSIGN_DISABLE", "1")
    analysis = fake_analysis(root)
    expected = fake_analysis(root)
    with caplog.at_level(logging.INFO, logger="kmssign"):
        sign_bundled(analysis)
        sign_outputs(root)
    assert analysis.binaries == expected.binaries and analysis.datas == expected.datas
    assert [r.getMessage() for r in caplog.records if r.name == "kmssign"] == [
        "kmssign: KMSSIGN_DISABLE is set; bundled binaries are not signed",
        "kmssign: KMSSIGN_DISABLE is set; build outputs are not signed",
    ]
    assert not is_signed(root / "lib.dll")


@pytest.mark.osslsigncode
def test_sign_outputs_signs_pe_files_of_a_tree(
    project: Callable[[str], Path], in_build: Callable[[Path], Path], pki: TestPKI,
    tsa: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    root = project(key_file_settings(pki.identity("rsa2048"), tsa.url()))
    in_build(root)
    tree = root / "dist" / "app"
    internal = tree / "_internal"
    internal.mkdir(parents=True)
    shutil.copy(root / "launcher.exe", tree / "app.exe")
    for name in ("lib.dll", "vendor.dll", "notes.txt"):
        shutil.copy(root / name, internal / name)
    (internal / "base_library.zip").write_bytes(b"PK\3\4 not really")
    vendor = sha256(internal / "vendor.dll")

    with caplog.at_level(logging.INFO, logger="kmssign"):
        report = sign_outputs(SimpleNamespace(name=str(tree)))  # what COLLECT(...) looks like
    assert report.count("signed") == 2 and report.count("skipped") == 1
    for path in (tree / "app.exe", internal / "lib.dll"):
        peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    assert sha256(internal / "vendor.dll") == vendor
    messages = [r.getMessage() for r in caplog.records]
    assert f"kmssign: 2 files in {tree} are not PE files; left as they are" in messages


@pytest.mark.osslsigncode
@pytest.mark.posix  # /bin/true
def test_sign_outputs_leaves_non_pe_executables_and_rejects_onedir_exe(
    project: Callable[[str], Path], in_build: Callable[[Path], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = project('timestamp = "off"')
    in_build(root)
    elf = root / "app"
    shutil.copy("/bin/true", elf)
    with caplog.at_level(logging.INFO, logger="kmssign"):
        report = sign_outputs(SimpleNamespace(name=str(elf), exclude_binaries=False))
    assert report.results == []
    assert caplog.records[-1].getMessage() == (
        f"kmssign: {elf} is not a PE file (not a Windows build); left unsigned"
    )
    with pytest.raises(SystemExit, match="call sign_outputs\\(\\) on the COLLECT"):
        sign_outputs(SimpleNamespace(name=str(elf), exclude_binaries=True))
    with pytest.raises(SystemExit, match="no such file or directory"):
        sign_outputs(root / "dist" / "missing.exe")


@pytest.mark.osslsigncode
def test_sign_outputs_failure_names_the_file(
    project: Callable[[str], Path], in_build: Callable[[Path], Path], pki: TestPKI
) -> None:
    root = project(key_file_settings(pki.identity("rsa2048"), None))
    in_build(root)
    broken = root / "broken.exe"
    broken.write_bytes((root / "launcher.exe").read_bytes()[:1024])  # headers, no sections
    with pytest.raises(SystemExit) as caught:
        sign_outputs(broken)
    message = str(caught.value.code)
    assert message.startswith("kmssign: error: 1 output file(s) could not be signed: broken.exe: ")
    assert "\n" not in message


@pytest.mark.osslsigncode  # the project's vendor.dll
def test_a_broken_vendor_signature_ends_the_build_with_one_line(
    project: Callable[[str], Path], in_build: Callable[[Path], Path], pki: TestPKI
) -> None:
    """A vendor DLL patched after it was signed is not "already signed": both helpers
    stop the build naming it (the same check as `kmssign sign`), before any signing."""
    identity = pki.identity("rsa2048")
    root = project(key_file_settings(identity, None))
    in_build(root)
    before = break_signature(root / "vendor.dll", "content")
    tree = root / "dist" / "app"
    tree.mkdir(parents=True)
    shutil.copy(root / "vendor.dll", tree / "vendor.dll")
    signer = CountingSigner(identity)
    for call, what in ((lambda: sign_bundled(fake_analysis(root), signer=signer), "bundled"),
                       (lambda: sign_outputs(tree, signer=signer), "output")):
        with pytest.raises(SystemExit) as caught:
            call()
        message = str(caught.value.code)
        assert message.startswith(
            f"kmssign: error: 1 {what} file(s) could not be signed: vendor.dll: "
            "its existing signature is broken (the file's digest does not match"
        ), message
        # a .spec build has no flags: the message names the setting
        assert message.endswith("signing with skip-signed off replaces it"), message
        assert "\n" not in message
    assert signer.calls == 0
    assert (root / "vendor.dll").read_bytes() == before == (tree / "vendor.dll").read_bytes()


def test_cli_passes_every_argument_to_pyinstaller() -> None:
    args = build_parser().parse_args(["pyinstaller", "--onefile", "-y", "--name", "x", "app.py"])
    assert args.command == "pyinstaller"
    assert args.pyinstaller_args == ["--onefile", "-y", "--name", "x", "app.py"]


def test_cli_reports_errors_in_one_line_and_restores_pyinstaller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PyInstaller.building import build_main

    monkeypatch.delenv("KMSSIGN_DISABLE", raising=False)
    original = build_main.Analysis, build_main.EXE, build_main.COLLECT
    spec = tmp_path / "broken.spec"
    spec.write_text("import kmssign.pyinstaller\nkmssign.pyinstaller.sign_outputs('nothing')\n")
    monkeypatch.chdir(tmp_path)
    code = main(["pyinstaller", "--distpath", str(tmp_path / "d"), "--workpath",
                 str(tmp_path / "w"), str(spec)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"kmssign: error: {tmp_path / 'nothing'}: no such file or directory" in err
    assert "Traceback" not in err
    assert (build_main.Analysis, build_main.EXE, build_main.COLLECT) == original

    code = main(["pyinstaller", str(tmp_path / "missing.py")])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_wraps_spec_targets_unless_disabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = tmp_path / "probe.spec"
    spec.write_text(
        "names = [c.__qualname__ for c in (Analysis, EXE, COLLECT)]\n"
        "open(os.path.join(SPECPATH, 'seen.txt'), 'a').write(' '.join(names) + '\\n')\n"
    )
    argv = ["pyinstaller", "--distpath", str(tmp_path / "d"), "--workpath", str(tmp_path / "w"),
            str(spec)]
    assert main(argv) == 0
    monkeypatch.setenv("KMSSIGN_DISABLE", "yes")
    with caplog.at_level(logging.INFO, logger="kmssign"):
        assert main(argv) == 0
    wrapped, plain = (tmp_path / "seen.txt").read_text().splitlines()
    assert wrapped.split() == [f"_signing_targets.<locals>.{n}" for n in ("Analysis", "EXE",
                                                                         "COLLECT")]
    assert plain.split() == ["Analysis", "EXE", "COLLECT"]
    assert [r.getMessage() for r in caplog.records if r.name == "kmssign"] == [
        "kmssign: KMSSIGN_DISABLE is set; running PyInstaller without signing"
    ]


# --------------------------------------------------------------------------- real builds


@pytest.mark.osslsigncode
@pytest.mark.posix  # runs the Linux build it made
@pytest.mark.slow
def test_onedir_build_with_kms_signs_bundled_dlls_once(
    project: Callable[[str], Path], pki: TestPKI, tsa: Any, kms_identity: Callable[..., Any],
    kms_counter: KmsProxy, aws_env: dict[str, str],
) -> None:
    key_id, cert_path = kms_identity()
    root = project("\n".join([
        f'key-id = "{key_id}"',
        f'certificate = "{cert_path}"',
        f'endpoint-url = "{kms_counter.endpoint_url}"',
        'region = "us-east-1"',
        f'timestamp-urls = ["{tsa.url()}"]',
    ]))
    write_spec(root, ONEDIR)
    env = clean_env()  # aws_env points boto3 at moto with dummy credentials
    signs = kms_counter.count("Sign")

    proc = run_pyinstaller(root, "app.spec", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert kms_counter.count("Sign") == signs + 2  # lib.dll, tools/launcher.exe
    internal = root / "dist" / "app" / "_internal"
    for path in (internal / "lib.dll", internal / "tools" / "launcher.exe"):
        peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    assert sha256(internal / "vendor.dll") == sha256(root / "vendor.dll")
    assert (internal / "notes.txt").read_text() == "not a PE file\n"
    signed_lib = (internal / "lib.dll").read_bytes()
    app = subprocess.run([root / "dist" / "app" / "app"], capture_output=True, text=True)
    assert app.returncode == 0, app.stderr
    assert app.stdout.strip() == f"app ran; lib.dll sha256 {hashlib.sha256(signed_lib).hexdigest()}"

    gets = kms_counter.count("GetPublicKey")
    proc = run_pyinstaller(root, "app.spec", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert kms_counter.count("Sign") == signs + 2  # the signed copies were re-used
    assert kms_counter.count("GetPublicKey") == gets
    assert "0 signed, 2 signed copies re-used, 1 already signed" in proc.stderr
    assert (internal / "lib.dll").read_bytes() == signed_lib


@pytest.mark.osslsigncode
@pytest.mark.posix  # runs the Linux build it made
@pytest.mark.slow
def test_onefile_build_archive_carries_signed_dlls(
    project: Callable[[str], Path], pki: TestPKI, tsa: Any
) -> None:
    from PyInstaller.archive.readers import CArchiveReader

    root = project(key_file_settings(pki.identity("rsa2048"), tsa.url()))
    write_spec(root, ONEFILE)
    proc = run_pyinstaller(root, "app.spec", env=clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    exe = root / "dist" / "app"
    assert f"kmssign: {exe} is not a PE file (not a Windows build); left unsigned" in proc.stderr

    archive = CArchiveReader(str(exe))
    extracted = root / "extracted"
    extracted.mkdir()
    for name in ("lib.dll", "tools/launcher.exe", "vendor.dll"):
        (extracted / Path(name).name).write_bytes(archive.extract(name))
    for name in ("lib.dll", "launcher.exe"):
        peutil.osslsigncode_verify(extracted / name, pki.root_pem, tsa_ca=pki.root_pem)
    assert sha256(extracted / "vendor.dll") == sha256(root / "vendor.dll")

    app = subprocess.run([exe], capture_output=True, text=True)
    assert app.returncode == 0, app.stderr
    assert app.stdout.strip() == f"app ran; lib.dll sha256 {sha256(extracted / 'lib.dll')}"


@pytest.mark.osslsigncode
@pytest.mark.posix  # runs the Linux build it made
@pytest.mark.slow
def test_kmssign_pyinstaller_command_builds_signed(
    project: Callable[[str], Path], pki: TestPKI, tsa: Any
) -> None:
    root = project(key_file_settings(pki.identity("rsa2048"), tsa.url()))
    proc = run_kmssign(
        root, "pyinstaller", "--noconfirm", "--onedir", "--name", "cliapp",
        "--add-binary", f"lib.dll{os.pathsep}.", "--add-data", f"launcher.exe{os.pathsep}tools",
        "app.py", env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kmssign: bundled binaries: 2 signed" in proc.stderr
    internal = root / "dist" / "cliapp" / "_internal"
    for path in (internal / "lib.dll", internal / "tools" / "launcher.exe"):
        peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
    assert (root / "cliapp.spec").is_file()
    app = subprocess.run([root / "dist" / "cliapp" / "cliapp"], capture_output=True, text=True)
    assert app.returncode == 0 and app.stdout.startswith("app ran"), app.stderr


# --------------------------------------------------------------------------- Windows under wine


def _windows_onefile(bootloader: Path, directory: Path, payload: Path, corrupt: bool) -> Path:
    """PyInstaller's Windows bootloader with a CArchive appended, as EXE(...) makes it."""
    from PyInstaller.archive.writers import CArchiveWriter

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hello.txt").write_text("hello from the archive\n")
    pkg = directory / "app.pkg"
    CArchiveWriter(str(pkg), [
        ("lib.dll", str(payload), True, "b"),
        ("hello.txt", str(directory / "hello.txt"), False, "x"),
    ], "python311.dll")
    data = pkg.read_bytes()
    if corrupt:  # break the cookie magic the bootloader scans for
        at = data.rfind(b"MEI\014\013\012\013\016")
        data = data[:at] + b"XXX" + data[at + 3:]
    exe = directory / "app.exe"
    exe.write_bytes(bootloader.read_bytes() + data)
    return exe


@pytest.mark.osslsigncode
@pytest.mark.wine
@pytest.mark.network  # PyInstaller's win_amd64 wheel
@pytest.mark.slow
def test_signed_windows_onefile_exe_still_finds_its_archive(
    windows_bootloader: Path, wine: Wine, pki: TestPKI, tsa: Any, tmp_path: Path,
    sample_sources: dict[str, Path],
) -> None:
    from PyInstaller.archive.readers import CArchiveReader

    identity = pki.identity("rsa2048")
    payload = sample_sources.get("lib.dll", peutil.LAUNCHERS["t64.exe"])
    overrides = dict(key_file=identity.key_path, certificate=identity.cert_path,
                     chain=[identity.chain_path], timestamp_urls=[tsa.url()])
    good = _windows_onefile(windows_bootloader, tmp_path / "good", payload, corrupt=False)
    bad = _windows_onefile(windows_bootloader, tmp_path / "bad", payload, corrupt=True)
    unsigned_size = good.stat().st_size
    for exe in (good, bad):
        assert sign_outputs(exe, **overrides).count("signed") == 1

    peutil.osslsigncode_verify(good, pki.root_pem, tsa_ca=pki.root_pem)
    with open(good, "rb") as f:
        image = parse_pe(f)
    assert image.has_certificate_table and good.stat().st_size > unsigned_size
    archive = CArchiveReader(str(good))
    assert archive.extract("hello.txt") == b"hello from the archive\n"
    assert archive.extract("lib.dll") == payload.read_bytes()

    ran = wine.run(good)
    broken = wine.run(bad)
    # The good exe got past the archive (cookie, TOC, extraction) and failed only at the
    # Python DLL it does not ship; the broken one fails where the cookie is looked for.
    assert "Failed to load Python DLL" in ran.stderr, ran.stderr
    assert "embedded PKG archive" not in ran.stderr and "cookie" not in ran.stderr
    assert "Could not load PyInstaller's embedded PKG archive" in broken.stderr, broken.stderr
    assert "Python DLL" not in broken.stderr


@pytest.mark.mingw
@pytest.mark.osslsigncode
@pytest.mark.wine
@pytest.mark.network  # PyInstaller's win_amd64 wheel
@pytest.mark.slow
def test_signed_windows_onefile_passes_win_verify_trust(
    windows_bootloader: Path, win_verify_trust: Check, pki: TestPKI, tsa: Any, tmp_path: Path
) -> None:
    """Windows's own check (WinVerifyTrust, under Wine) accepts a signed onefile exe and
    covers its appended archive: one changed archive byte is a bad digest."""
    identity = pki.identity("rsa2048")
    exe = _windows_onefile(windows_bootloader, tmp_path / "app", peutil.LAUNCHERS["w32.exe"],
                           corrupt=False)
    report = sign_outputs(exe, key_file=identity.key_path, certificate=identity.cert_path,
                          chain=[identity.chain_path], timestamp_urls=[tsa.url()])
    assert report.count("signed") == 1
    peutil.osslsigncode_verify(exe, pki.root_pem, tsa_ca=pki.root_pem)
    with open(exe, "rb") as f:
        image = parse_pe(f)
    tampered = tmp_path / "tampered.exe"
    data = bytearray(exe.read_bytes())
    data[image.cert_table_offset - 64] ^= 0x01  # in the archive, just before the table
    tampered.write_bytes(bytes(data))
    assert win_verify_trust([exe, tampered]) == [OK, TRUST_E_BAD_DIGEST]


@pytest.mark.mingw
@pytest.mark.osslsigncode
@pytest.mark.wine
@pytest.mark.slow
def test_signed_mingw_hello_runs_under_wine(
    mingw_binaries: dict[str, Path], wine: Wine, pki: TestPKI, tsa: Any, tmp_path: Path
) -> None:
    identity = pki.identity("p256")
    hello = peutil.copy_sample(mingw_binaries["hello.exe"], tmp_path)
    report = sign_outputs(hello, key_file=identity.key_path, certificate=identity.cert_path,
                          chain=[identity.chain_path], timestamp_urls=[tsa.url()])
    assert report.count("signed") == 1
    peutil.osslsigncode_verify(hello, pki.root_pem, tsa_ca=pki.root_pem)
    ran = wine.run(hello)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.replace("\r\n", "\n") == "hello from kmssign test\n"
