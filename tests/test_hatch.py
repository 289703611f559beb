"""The Hatch build hook end to end: real wheels built in subprocesses, then unzipped.

Signing goes through moto's KMS server on loopback (``AWS_ENDPOINT_URL``) and the
loopback TSA; every signed member is checked with ``osslsigncode verify``.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmssign import config
from kmssign._internal.pe.image import looks_like_pe
from kmssign.errors import ConfigError
from kmssign.frontends.hatch import work as hatch_files
from tests.support import peutil
from tests.support.fixtures_build import (
    SAMPLE_APP,
    assert_record_matches,
    extract,
    members,
    run_build,
    tree_digest,
)
from tests.support.fixtures_kms import KmsIdentity
from tests.support.helpers import run_cli
from tests.support.pki import SigningIdentity, TestPKI
from tests.support.plugincheck import (
    Built,
    assert_installs,
    assert_signed_lines,
    build_recorded,
    one_error_line,
    toml_table,
)
from tests.support.tsa_server import LoopbackTSA

KMS_SUBJECT = "CN=kmssign Test KMS Signer RSA_2048"
SHARED_DATA = "throwaway-1.0.data/data/share/throwaway/tool.exe"
SHARED_SCRIPT = "throwaway-1.0.data/scripts/launcher.exe"

GENERATOR_HOOK = '''
import shutil
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

GEN_EXE = {gen_exe!r}
GEN_DLL = {gen_dll!r}


class Generate(BuildHookInterface):
    """Produces binaries outside the tree, like a hook that compiles them."""

    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        out = Path(tempfile.mkdtemp(prefix="generated-"))
        shutil.copyfile(GEN_EXE, out / "hello.exe")
        directory = out / "dir"
        directory.mkdir()
        shutil.copyfile(GEN_DLL, directory / "lib.dll")
        (directory / "notes.txt").write_text("generated notes\\n")
        build_data["force_include"][str(out / "hello.exe")] = "pkg/gen/hello.exe"
        build_data["force_include"][str(directory)] = "pkg/gendir"
        build_data["artifacts"].append("pkg/prebuilt.exe")
'''

PYPROJECT = '''
[build-system]
requires = ["hatchling", "kmssign"]
build-backend = "hatchling.build"

[project]
name = "throwaway"
version = "1.0"

[tool.hatch.build.targets.wheel]
packages = ["pkg"]
exclude = ["pkg/prebuilt.exe"]

[tool.hatch.build.targets.wheel.force-include]
"pkg/native/tool.exe" = "pkg/tools/tool.exe"

[tool.hatch.build.targets.wheel.shared-data]
"share/tool.exe" = "share/throwaway/tool.exe"

[tool.hatch.build.targets.wheel.shared-scripts]
"scripts/launcher.exe" = "launcher.exe"

[tool.hatch.build.targets.wheel.hooks.custom]

[tool.hatch.build.targets.wheel.hooks.kmssign]
{hook_table}

[tool.kmssign]
{kmssign_table}
'''


@dataclass
class Project:
    root: Path
    sources: dict[str, Path]  # wheel path -> the file it comes from (before signing)
    signed: set[str]  # wheel paths that must come out signed by the build's key
    kept: set[str]  # PE members that must stay byte-identical (foreign signature, excluded)


@pytest.fixture(scope="session")
def foreign_signed_dll(
    pki: TestPKI, sample_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A DLL already signed by another publisher (osslsigncode, another key)."""
    src = sample_sources.get("lib.dll", peutil.LAUNCHERS["w32.exe"])
    dst = tmp_path_factory.mktemp("foreign") / "vendor.dll"
    other = pki.identity("rsa3072")
    peutil.osslsigncode_sign(src, dst, other, "-ac", str(other.chain_path))
    return dst


@pytest.fixture(scope="session")
def make_project(
    sample_sources: dict[str, Path], foreign_signed_dll: Path
) -> Callable[..., Project]:
    """Factory: a throwaway project whose wheel has PE files from every source."""

    def make(
        root: Path, kmssign_table: dict[str, object], hook_table: dict[str, object]
    ) -> Project:
        gen_exe = sample_sources.get("hello.exe", peutil.LAUNCHERS["t64.exe"])
        gen_dll = sample_sources.get("lib.dll", peutil.LAUNCHERS["w32.exe"])
        fake = root / "pkg" / "fake.exe"
        files = {
            "pkg/bin/t64.exe": peutil.LAUNCHERS["t64.exe"],
            "pkg/bin/launcher.bin": peutil.LAUNCHERS["w32.exe"],  # a PE by content
            "pkg/bin/vendor.dll": foreign_signed_dll,
            "pkg/skipme/raw.exe": peutil.LAUNCHERS["t64-arm.exe"],  # excluded by a glob
            "pkg/prebuilt.exe": gen_exe,  # excluded by hatch, added back as an artifact
            # forced in by the config from inside the package: not shipped at its own path
            "pkg/native/tool.exe": peutil.LAUNCHERS["t64.exe"],
            "share/tool.exe": peutil.LAUNCHERS["t64.exe"],  # .data/data/ in the wheel
            "scripts/launcher.exe": peutil.LAUNCHERS["w32.exe"],  # .data/scripts/
        }
        for relative, src in files.items():
            peutil.copy_sample(src, (root / relative).parent, Path(relative).name)
        (root / "pkg" / "__init__.py").write_text('"""A throwaway package."""\n')
        fake.write_bytes(b"MZ but not a PE file\n")
        (root / "hatch_build.py").write_text(
            GENERATOR_HOOK.format(gen_exe=str(gen_exe), gen_dll=str(gen_dll))
        )
        (root / "pyproject.toml").write_text(
            PYPROJECT.format(hook_table=toml_table(hook_table),
                             kmssign_table=toml_table(kmssign_table))
        )
        sources = {
            "pkg/__init__.py": root / "pkg" / "__init__.py",
            "pkg/fake.exe": fake,
            "pkg/bin/t64.exe": root / "pkg/bin/t64.exe",
            "pkg/bin/launcher.bin": root / "pkg/bin/launcher.bin",
            "pkg/bin/vendor.dll": root / "pkg/bin/vendor.dll",
            "pkg/skipme/raw.exe": root / "pkg/skipme/raw.exe",
            "pkg/prebuilt.exe": root / "pkg/prebuilt.exe",
            "pkg/tools/tool.exe": root / "pkg/native/tool.exe",
            "pkg/gen/hello.exe": gen_exe,
            "pkg/gendir/lib.dll": gen_dll,
            SHARED_DATA: root / "share/tool.exe",
            SHARED_SCRIPT: root / "scripts/launcher.exe",
        }
        signed = {"pkg/bin/t64.exe", "pkg/bin/launcher.bin", "pkg/prebuilt.exe",
                  "pkg/tools/tool.exe", "pkg/gen/hello.exe", "pkg/gendir/lib.dll",
                  SHARED_DATA, SHARED_SCRIPT}
        kept = {"pkg/bin/vendor.dll", "pkg/skipme/raw.exe"}
        return Project(root, sources, signed, kept)

    return make


def kms_settings(identity: KmsIdentity, tsa: LoopbackTSA) -> dict[str, object]:
    return {
        "key-id": identity.key_id,
        "certificate": str(identity.cert_path),
        "timestamp-urls": [tsa.url()],
        "timestamp": "off",  # the hook table turns it on: hook keys override [tool.kmssign]
        "exclude": ["pkg/skipme/*"],
    }


HOOK_TABLE: dict[str, object] = {"timestamp": "required", "description": "throwaway"}


@pytest.fixture(scope="module")
def kms_wheel(
    make_project: Callable[..., Project],
    kms_identity: Callable[..., KmsIdentity],
    tsa: LoopbackTSA,
    build_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Built[Project]:
    """The throwaway project built once with ``python -m build --wheel`` against moto KMS."""
    root = tmp_path_factory.mktemp("throwaway")
    project = make_project(root / "proj", kms_settings(kms_identity(), tsa), HOOK_TABLE)
    return build_recorded(project, project.root, lambda p: run_build(p, root / "dist", build_env))


# --- the wheel, end to end -------------------------------------------------------------


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_every_pe_member_is_signed_by_the_kms_key_and_timestamped(
    kms_wheel: Built[Project], pki: TestPKI, tmp_path: Path
) -> None:
    content = extract(kms_wheel.build.wheel, tmp_path / "wheel")
    pe_members = {
        p.relative_to(content).as_posix() for p in content.rglob("*") if looks_like_pe(p)
    }
    assert pe_members == kms_wheel.project.signed | kms_wheel.project.kept
    for name in sorted(kms_wheel.project.signed):
        out = peutil.osslsigncode_verify(content / name, pki.root_pem, tsa_ca=pki.root_pem)
        assert KMS_SUBJECT in out, (name, out)


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_kmssign_verify_and_wheel_unpack_accept_the_wheel(
    kms_wheel: Built[Project], pki: TestPKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = kms_wheel.build.wheel
    # the member the hook's exclude left unsigned is left out here too (unsigned fails)
    code, out, err = run_cli(capsys, "verify", "--ca", str(pki.root_pem),
                             "--exclude", "pkg/skipme/*", str(wheel))
    assert code == 0, out + err
    for name in kms_wheel.project.signed:
        line = next(x for x in out.splitlines() if f"!{name} " in x)
        assert line.startswith("verified: ") and "timestamp 20" in line, line
    subprocess.run(
        [sys.executable, "-m", "wheel", "unpack", "-d", str(tmp_path), str(wheel)],
        check=True, capture_output=True,
    )


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_foreign_signed_excluded_and_non_pe_members_are_unchanged(
    kms_wheel: Built[Project],
) -> None:
    content = members(kms_wheel.build.wheel)
    project = kms_wheel.project
    for name, src in project.sources.items():
        if name in project.signed:
            assert content[name] != src.read_bytes(), name
        else:
            assert content[name] == src.read_bytes(), name
    assert set(project.sources) <= set(content)
    assert "pkg/gendir/notes.txt" in content


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_record_matches_and_source_tree_is_untouched(kms_wheel: Built[Project]) -> None:
    assert_record_matches(kms_wheel.build.wheel)
    assert kms_wheel.after == kms_wheel.before


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_build_log_names_every_file_and_the_count(kms_wheel: Built[Project]) -> None:
    assert_signed_lines(kms_wheel.build.output, kms_wheel.project.signed,
                        "kmssign: 8 signed, 1 skipped")
    lines = kms_wheel.build.output.splitlines()
    assert "kmssign: skipped: pkg/bin/vendor.dll (already signed)" in lines
    assert not any("raw.exe" in x for x in lines)


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_wheel_installs(kms_wheel: Built[Project], tmp_path: Path) -> None:
    names = ("pkg/bin/t64.exe", "pkg/gen/hello.exe", "pkg/gendir/lib.dll")
    assert_installs(kms_wheel.build.wheel, names, tmp_path)


# --- switches and failures -------------------------------------------------------------


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_disabled_build_ships_the_sources(
    make_project: Callable[..., Project],
    kms_identity: Callable[..., KmsIdentity],
    tsa: LoopbackTSA,
    build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "proj", kms_settings(kms_identity(), tsa), HOOK_TABLE)
    env = {**build_env, "KMSSIGN_DISABLE": "1"}
    build = run_build(project.root, tmp_path / "dist", env)
    content = members(build.wheel)
    for name, src in project.sources.items():
        assert content[name] == src.read_bytes(), name
    notes = [x for x in build.output.splitlines() if x.startswith("kmssign:")]
    assert notes == ["kmssign: KMSSIGN_DISABLE is set; not signing"], build.output


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_wrong_key_id_fails_the_build_with_one_line(
    make_project: Callable[..., Project],
    kms_identity: Callable[..., KmsIdentity],
    tsa: LoopbackTSA,
    build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "proj", kms_settings(kms_identity(), tsa), HOOK_TABLE)
    before = tree_digest(project.root)
    missing = "alias/kmssign-no-such-key"
    build = run_build(project.root, tmp_path / "dist", {**build_env, "KMSSIGN_KEY_ID": missing})
    assert missing in one_error_line(build)
    assert tree_digest(project.root) == before


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_timestamp_outage_under_required_fails_the_build(
    make_project: Callable[..., Project],
    kms_identity: Callable[..., KmsIdentity],
    tsa: LoopbackTSA,
    build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    settings = {**kms_settings(kms_identity(), tsa), "timestamp-urls": [tsa.refused_url()]}
    project = make_project(tmp_path / "proj", settings, HOOK_TABLE)
    build = run_build(project.root, tmp_path / "dist", build_env)
    line = one_error_line(build)
    assert line.startswith("kmssign: error: 8 files could not be signed: "), line
    # the first file asked every server; the others were not sent to them again
    groups = re.findall(
        r"(?:^|; )((?:[\w./-]+, )*[\w./-]+): (no timestamp server answered|not asking the "
        r"timestamp servers again in this run): ",
        line.removeprefix("kmssign: error: 8 files could not be signed: "),
    )
    assert [reason for _, reason in groups] in (
        ["no timestamp server answered", "not asking the timestamp servers again in this run"],
        ["not asking the timestamp servers again in this run", "no timestamp server answered"],
    ), line
    names = [name for found, _ in groups for name in found.split(", ")]
    assert sorted(names) == sorted(project.signed), line


def key_file_settings(identity: SigningIdentity) -> dict[str, object]:
    return {
        "key-file": str(identity.key_path),
        "certificate": str(identity.cert_path),
        "chain": [str(identity.chain_path)],
        "timestamp": "off",
    }


@pytest.mark.osslsigncode
def test_settings_errors_name_the_hook_table_keys(
    make_project: Callable[..., Project], pki: TestPKI, build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    project = make_project(
        tmp_path / "proj", key_file_settings(pki.identity()),
        {"timestamp": "sometimes", "colour": "red"},
    )
    line = one_error_line(run_build(project.root, tmp_path / "dist", build_env))
    assert "tool.hatch.build.targets.wheel.hooks.kmssign.timestamp must be one of" in line
    assert "tool.hatch.build.targets.wheel.hooks.kmssign.colour is not a known setting" in line


@pytest.mark.osslsigncode
def test_a_file_that_cannot_be_signed_fails_the_build(
    make_project: Callable[..., Project], pki: TestPKI, build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "proj", key_file_settings(pki.identity()), {})
    broken = project.root / "pkg" / "bin" / "broken.exe"
    broken.write_bytes(peutil.LAUNCHERS["t64.exe"].read_bytes()[:1024])  # headers only
    assert looks_like_pe(broken)
    build = run_build(project.root, tmp_path / "dist", build_env)
    line = one_error_line(build)
    assert "1 file could not be signed: pkg/bin/broken.exe: " in line, line
    assert "kmssign: failed: pkg/bin/broken.exe: " not in build.output  # its reason once


def test_editable_wheel_is_untouched(
    pki: TestPKI, build_env: dict[str, str], tmp_path: Path
) -> None:
    """An editable wheel is never signed: a configuration that could only fail (a missing
    certificate) does not stop it."""
    root = tmp_path / "proj"
    peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], root / "pkg")
    (root / "pkg" / "__init__.py").write_text("")
    settings = {**key_file_settings(pki.identity()), "certificate": str(tmp_path / "no.pem")}
    (root / "pyproject.toml").write_text(
        '[project]\nname = "plain"\nversion = "1.0"\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["pkg"]\ndev-mode-dirs = ["."]\n'
        "[tool.hatch.build.hooks.kmssign]\n" + toml_table(settings)
    )
    build = run_build(root, tmp_path / "dist", build_env, frontend="hatchling",
                      target="wheel:editable")
    assert build.returncode == 0, build.output
    assert "kmssign:" not in build.output
    assert (root / "pkg" / "t64.exe").read_bytes() == peutil.LAUNCHERS["t64.exe"].read_bytes()
    failed = run_build(root, tmp_path / "dist2", build_env, frontend="hatchling", target="wheel")
    assert "kmssign: error: " in failed.output  # the same table does fail a standard wheel


def test_sdist_is_untouched(pki: TestPKI, build_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "proj"
    peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], root / "pkg")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling", "kmssign"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "plain"\nversion = "1.0"\n'
        "[tool.hatch.build.hooks.kmssign]\n" + toml_table(key_file_settings(pki.identity()))
    )
    out = tmp_path / "dist"
    build = run_build(root, out, build_env, target="sdist")
    assert build.returncode == 0, build.output
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        member = archive.extractfile("plain-1.0/pkg/t64.exe")
        assert member is not None
        assert member.read() == peutil.LAUNCHERS["t64.exe"].read_bytes()
    assert "kmssign: signed" not in build.output


CUSTOM_BUILDER = '''
import os
import shutil

from hatchling.builders.plugin.interface import BuilderInterface


class AppBuilder(BuilderInterface):
    """Builds a directory of executables, like the binary (PyApp) target."""

    def get_version_api(self):
        return {{"standard": self.build_standard}}

    def build_standard(self, directory, **build_data):
        app = os.path.join(directory, "app")
        os.makedirs(os.path.join(app, "lib"), exist_ok=True)
        shutil.copyfile({exe!r}, os.path.join(app, "app.exe"))
        shutil.copyfile({dll!r}, os.path.join(app, "lib", "helper.dll"))
        with open(os.path.join(app, "README.txt"), "w") as f:
            f.write("not a binary\\n")
        return app
'''


@pytest.mark.osslsigncode
@pytest.mark.slow
def test_executables_of_other_targets_are_signed_in_place(
    kms_identity: Callable[..., KmsIdentity],
    tsa: LoopbackTSA,
    pki: TestPKI,
    sample_sources: dict[str, Path],
    build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    identity = kms_identity()
    root = tmp_path / "proj"
    root.mkdir()
    exe = sample_sources.get("hello.exe", peutil.LAUNCHERS["t64.exe"])
    dll = sample_sources.get("lib.dll", peutil.LAUNCHERS["w32.exe"])
    (root / "hatch_build.py").write_text(CUSTOM_BUILDER.format(exe=str(exe), dll=str(dll)))
    settings = {"key-id": identity.key_id, "certificate": str(identity.cert_path),
                "timestamp-urls": [tsa.url()]}
    (root / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "1.0"\n'
        "[tool.hatch.build.targets.custom.hooks.kmssign]\n" + toml_table(settings)
    )
    out = tmp_path / "dist"
    build = run_build(root, out, build_env, frontend="hatchling", target="custom")
    assert build.returncode == 0, build.output
    app = out / "app"
    for name in ("app.exe", "lib/helper.dll"):
        report = peutil.osslsigncode_verify(app / name, pki.root_pem, tsa_ca=pki.root_pem)
        assert KMS_SUBJECT in report
        assert f"kmssign: signed: {name} (" in build.output
    assert (app / "README.txt").read_text() == "not a binary\n"
    assert "kmssign: 2 signed, 0 skipped" in build.output


# --- sample_app --------------------------------------------------------------------------


def sample_env(
    build_env: dict[str, str], identity: KmsIdentity, tsa: LoopbackTSA
) -> dict[str, str]:
    return {
        **build_env,
        "KMSSIGN_KEY_ID": identity.key_id,
        "KMSSIGN_CERTIFICATE": str(identity.cert_path),
        "KMSSIGN_TIMESTAMP_URLS": tsa.url(),
    }


@pytest.mark.mingw  # sample_app's hook compiles greet.dll and hello.exe with it
@pytest.mark.osslsigncode
@pytest.mark.network  # hatchling for the isolated build
@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["build", "hatch"])
def test_sample_app_wheel(
    frontend: str,
    kms_identity: Callable[..., KmsIdentity],
    tsa: LoopbackTSA,
    pki: TestPKI,
    build_env: dict[str, str],
    tmp_path: Path,
) -> None:
    app = tmp_path / "sample_app"
    shutil.copytree(SAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__", "dist"))
    before = tree_digest(app)
    env = sample_env(build_env, kms_identity(), tsa)
    build = run_build(app, tmp_path / "dist", env, frontend=frontend, isolated=True)
    wheel = build.wheel
    assert tree_digest(app) == before
    assert_record_matches(wheel)
    content = extract(wheel, tmp_path / "wheel")
    binaries = sorted(p.relative_to(content).as_posix() for p in content.rglob("*")
                      if looks_like_pe(p))
    expected = ["sample_app/bin/greet.dll", "sample_app/bin/hello.exe"]
    assert binaries == expected
    for name in binaries:
        report = peutil.osslsigncode_verify(content / name, pki.root_pem, tsa_ca=pki.root_pem)
        assert KMS_SUBJECT in report
        assert f"kmssign: signed: {name} (" in build.output
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )
    listed = subprocess.run(
        [sys.executable, "-m", "sample_app", "--list"], env={**env, "PYTHONPATH": str(target)},
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert [Path(p).name for p in listed] == [Path(n).name for n in expected]


@pytest.mark.mingw
@pytest.mark.network
@pytest.mark.slow
def test_build_and_verify_script(kmssign_wheel_dir: Path, build_env: dict[str, str]) -> None:
    """What ``nox -s sample`` runs, with its own throwaway PKI, KMS and TSA."""
    env = {k: v for k, v in build_env.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, str(SAMPLE_APP / "build_and_verify.py"), "--local-services",
         "--frontend", "hatch", "--kmssign-wheel-dir", str(kmssign_wheel_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout
    assert "hatch: sample_app-1.0.0-py3-none-any.whl: verified" in proc.stdout
    assert "kmssign: 2 verified, 0 failed" in proc.stdout


# --- helpers without hatchling -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), (None, False)],
)
def test_disable_variable(value: str | None, expected: bool) -> None:
    env = {} if value is None else {"KMSSIGN_DISABLE": value}
    assert config.disabled(env) is expected


def test_hook_table_name_is_the_targets_own_when_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.hatch.build.hooks.kmssign]\n")
    assert hatch_files.hook_table_name(tmp_path, "wheel") == "tool.hatch.build.hooks.kmssign"
    (tmp_path / "pyproject.toml").write_text("[tool.hatch.build.targets.wheel.hooks.kmssign]\n")
    assert hatch_files.hook_table_name(tmp_path, "wheel") == (
        "tool.hatch.build.targets.wheel.hooks.kmssign"
    )
    assert hatch_files.hook_table_name(tmp_path, "binary") == "tool.hatch.build.hooks.kmssign"


HOOK_MODULE = Path(hatch_files.__file__).with_name("hook.py")


def test_the_hook_imports_only_the_hook_interface_and_hookimpl() -> None:
    tree = ast.parse(HOOK_MODULE.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names if a.name.split(".")[0] == "hatchling")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hatchling"):
            imported.update(f"{node.module}.{a.name}" for a in node.names)
    assert imported == {
        "hatchling.builders.hooks.plugin.interface.BuildHookInterface",
        "hatchling.plugin.hookimpl",
    }


def test_the_hook_reaches_into_no_builder_internals() -> None:
    """Only what BuildHookInterface documents for a hook: no build_config (and so no
    included-file walks, reserved paths or force-include rewrites), no build_data keys."""
    tree = ast.parse(HOOK_MODULE.read_text(encoding="utf-8"))
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                  and isinstance(n.value, ast.Name) and n.value.id == "self"}
    assert attributes <= {"app", "root", "config", "target_name", "_settings"}, attributes
    subscripts = [n for n in ast.walk(tree) if isinstance(n, ast.Subscript)
                  and isinstance(n.value, ast.Name) and n.value.id == "build_data"]
    assert not subscripts


def test_hook_settings_ignore_hatchlings_own_keys_and_override_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kmssign]\nkey-id = "alias/file"\ndigest = "sha384"\n'
    )
    table = {"enable-by-default": True, "dependencies": ["x"], "digest": "sha512"}
    settings = hatch_files.hook_settings(tmp_path, table, "tool.hatch.build.hooks.kmssign", {})
    assert (settings.key_id, settings.digest) == ("alias/file", "sha512")
    env = {"KMSSIGN_DIGEST": "sha256"}
    assert hatch_files.hook_settings(tmp_path, table, "t", env).digest == "sha256"
    with pytest.raises(ConfigError, match=r"tool\.hatch\.build\.hooks\.kmssign\.jobs"):
        hatch_files.hook_settings(tmp_path, {"jobs": 0}, "tool.hatch.build.hooks.kmssign", {})
