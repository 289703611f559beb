"""Signers from other packages: the ``kmssign.signers`` entry point group and the
``signer`` setting, with a small signer package really built and installed."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from kmssign._internal.engine import signerchoice
from kmssign._internal.pyproject import read_toml
from kmssign.config import load_settings
from kmssign.errors import ConfigError
from tests.support import peutil
from tests.support.fixtures_plugins import InstalledPlugin
from tests.support.helpers import run_cli
from tests.support.pki import TestPKI

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.osslsigncode
def test_a_signer_from_another_package_signs_in_a_subprocess(
    signer_plugin: InstalledPlugin, pki: TestPKI, samples, tsa, tmp_path: Path
) -> None:
    identity = pki.identity("rsa2048")
    log = tmp_path / "acme.log"
    paths = [str(p) for p in samples.values()]
    proc = subprocess.run(
        [sys.executable, "-m", "kmssign", "sign", *paths, "--signer", "acme",
         "--cert", str(identity.cert_path), "--chain", str(identity.chain_path),
         "--description", "acme-made", "--timestamp-url", tsa.url("tsa")],
        env=signer_plugin.env(ACME_SIGNER_KEY=str(identity.key_path), ACME_SIGNER_LOG=str(log)),
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "note: acme signer in use" in proc.stderr + proc.stdout
    # one signature per file, made by the package's signer with the run's settings
    lines = log.read_text().splitlines()
    assert len(lines) == len(paths)
    assert all(line.startswith("sha256 ") and line.endswith(" acme-made") for line in lines)
    for path in samples.values():
        out = peutil.osslsigncode_verify(path, pki.root_pem, tsa_ca=pki.root_pem)
        assert "kmssign Test Signer rsa2048" in out
    verify = subprocess.run(
        [sys.executable, "-m", "kmssign", "verify", *paths, "--ca", str(pki.root_pem),
         "--require-timestamp"],
        capture_output=True, text=True, check=False,
    )
    assert verify.returncode == 0, verify.stderr


@pytest.mark.osslsigncode
@pytest.mark.parametrize("where", ["pyproject", "environment"])
def test_the_signer_setting_picks_the_package(
    signer_plugin: InstalledPlugin, pki: TestPKI, samples, tmp_path: Path, capsys,
    monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    identity = pki.identity("p256")
    monkeypatch.syspath_prepend(str(signer_plugin.site))  # its dist-info is found there
    monkeypatch.setenv("ACME_SIGNER_KEY", str(identity.key_path))
    monkeypatch.setenv("ACME_SIGNER_LOG", str(tmp_path / "acme.log"))
    project = tmp_path / "project"
    project.mkdir()
    table = 'signer = "acme"\n' if where == "pyproject" else ""
    (project / "pyproject.toml").write_text(f"[tool.kmssign]\n{table}")
    if where == "environment":
        monkeypatch.setenv("KMSSIGN_SIGNER", "acme")
    path = samples["t64.exe"]
    code, out, err = run_cli(
        capsys, "sign", str(path), "--config", str(project / "pyproject.toml"),
        "--cert", str(identity.cert_path), "--chain", str(identity.chain_path), "--no-timestamp",
    )
    assert code == 0, err
    assert (tmp_path / "acme.log").read_text().count("\n") == 1
    assert (tmp_path / "acme.log.closed").read_text() == "closed\n"  # the run made it
    peutil.osslsigncode_verify(path, pki.root_pem)


def test_a_signer_the_run_made_is_closed_when_the_run_fails(
    signer_plugin: InstalledPlugin, pki: TestPKI, samples, tmp_path: Path, capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The certificate is not the key's: the run ends before any file, and the signer it
    made (a token's sessions, in real life) is released all the same."""
    monkeypatch.syspath_prepend(str(signer_plugin.site))
    monkeypatch.setenv("ACME_SIGNER_KEY", str(pki.identity("p256").key_path))
    monkeypatch.setenv("ACME_SIGNER_LOG", str(tmp_path / "acme.log"))
    path = samples["t64.exe"]
    before = path.read_bytes()
    code, out, err = run_cli(
        capsys, "sign", str(path), "--signer", "acme",
        "--cert", str(pki.identity("rsa2048").cert_path), "--no-timestamp",
    )
    errors = [line for line in err.splitlines() if "error" in line]
    assert code != 0 and len(errors) == 1 and "does not belong to acme signer" in errors[0], err
    assert (tmp_path / "acme.log.closed").read_text() == "closed\n"
    assert path.read_bytes() == before


def test_a_signer_given_by_the_caller_stays_open(
    signer_plugin: InstalledPlugin, pki: TestPKI, samples, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library caller that passes its own signer closes it when it wants: a run neither
    closes it nor keeps it from signing again."""
    from kmssign import api
    from kmssign.config import Settings

    monkeypatch.syspath_prepend(str(signer_plugin.site))
    import acme_signer  # type: ignore[import-not-found]

    identity = pki.identity("rsa2048")
    log = tmp_path / "acme.log"
    signer = acme_signer.AcmeSigner(str(identity.key_path), str(log), None)
    settings = Settings(certificate=identity.cert_path, timestamp="off")
    for name in ("t64.exe", "w32.exe"):
        report = api.sign_files([samples[name]], settings, signer=signer)
        assert [r.status for r in report.results] == ["signed"], report.results
    assert log.read_text().count("\n") == 2
    assert not (tmp_path / "acme.log.closed").exists()


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        # a name no installed package offers: the known ones are listed
        ("azure", 2, "signer 'azure' is not installed (known: acme, aws-kms, broken, key-file"),
        # a registered factory that cannot be imported
        ("broken", 1, "signer 'broken' (acme_signer:missing_factory) cannot be loaded"),
    ],
    ids=["unknown", "cannot-load"],
)
def test_a_signer_that_cannot_be_used_is_one_line_and_touches_nothing(
    signer_plugin: InstalledPlugin, pki: TestPKI, samples, capsys,
    monkeypatch: pytest.MonkeyPatch, name: str, code: int, message: str,
) -> None:
    monkeypatch.syspath_prepend(str(signer_plugin.site))
    identity = pki.identity("rsa2048")
    path = samples["t64.exe"]
    before = path.read_bytes()
    status, out, err = run_cli(
        capsys, "sign", str(path), "--signer", name, "--cert", str(identity.cert_path),
        "--no-timestamp",
    )
    assert status == code
    assert err.count("\n") == 1, err
    assert message in err
    assert path.read_bytes() == before


def test_a_signer_package_that_needs_a_setting_says_so(
    signer_plugin: InstalledPlugin, pki: TestPKI, samples, capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(signer_plugin.site))
    monkeypatch.delenv("ACME_SIGNER_KEY", raising=False)
    identity = pki.identity("rsa2048")
    code, out, err = run_cli(
        capsys, "sign", str(samples["t64.exe"]), "--signer", "acme",
        "--cert", str(identity.cert_path), "--no-timestamp",
    )
    assert code == 2
    assert err == "kmssign: error: signer acme needs ACME_SIGNER_KEY\n"


def test_kmssign_registers_its_own_signers_the_same_way() -> None:
    """pyproject.toml's kmssign.signers entry points are the built-in factories."""
    data = read_toml(ROOT / "pyproject.toml", [])
    assert data is not None
    registered = data["project"]["entry-points"]["kmssign.signers"]
    assert set(registered) == set(signerchoice.BUILT_IN)
    for name, target in registered.items():
        module, _, attr = target.partition(":")
        __import__(module)
        assert getattr(sys.modules[module], attr) is signerchoice.BUILT_IN[name]
    # the installed distribution's metadata (pip installs kmssign for the tests) says so too
    installed = {ep.name: ep for ep in importlib.metadata.entry_points(group="kmssign.signers")
                 if ep.dist is not None and ep.dist.metadata["Name"] == "kmssign"}
    assert set(installed) == set(registered)
    assert all(ep.load() is signerchoice.BUILT_IN[name] for name, ep in installed.items())


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"key_id": "alias/x"}, "aws-kms"),
        ({"key_file": "k.pem"}, "key-file"),
        ({"pkcs11_key": "signing"}, "pkcs11"),
        ({"key_id": "alias/x", "signer": "acme"}, "acme"),
        ({}, None),
    ],
)
def test_the_key_setting_names_the_signer_by_default(
    tmp_path: Path, settings: dict[str, str], name: str | None
) -> None:
    loaded = load_settings(cwd=tmp_path, env={}, overrides=settings)
    assert signerchoice.signer_name(loaded) == name


def test_key_settings_exclude_each_other(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kmssign]\nkey-id = "alias/x"\npkcs11-key = "signing"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, env={"KMSSIGN_KEY_FILE": "a", "KMSSIGN_PKCS11_KEY": "b"})
    assert info.value.problems == [
        "tool.kmssign: key-id and pkcs11-key are mutually exclusive",
        "KMSSIGN_KEY_FILE and KMSSIGN_PKCS11_KEY are mutually exclusive",
    ]
    # a higher source choosing one drops what a lower one chose
    (tmp_path / "pyproject.toml").write_text('[tool.kmssign]\nkey-id = "alias/x"\n')
    loaded = load_settings(cwd=tmp_path, env={"KMSSIGN_PKCS11_KEY": "signing"})
    assert (loaded.key_id, loaded.pkcs11_key) == (None, "signing")


def test_a_signer_name_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, env={"KMSSIGN_SIGNER": "a b"})
    assert info.value.problems == [
        "KMSSIGN_SIGNER must be a signer name (letters, digits, '-', '_', '.'), not 'a b'"
    ]
