"""The Python the GitHub workflows and the action run, run here: the stand-in services of
the Windows acceptance job, its PE helpers, and the job-summary Markdown of the action."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.support import peutil
from tests.support.helpers import run_cli, sign_args
from tests.support.pki import TestPKI

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / ".github" / "scripts"


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


acceptance = script("acceptance")
summary = script("kmssign_summary")


def os_basics(home: Path) -> dict[str, str]:
    """The variables any process needs (Windows's Python cannot start without SYSTEMROOT)."""
    names = ("PATH", "SYSTEMROOT", "SYSTEMDRIVE", "TEMP", "TMP", "TMPDIR")
    return {"HOME": str(home), **{n: os.environ[n] for n in names if n in os.environ}}


def kmssign(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kmssign", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """ci_services.py serve in the background, as the Windows job starts it; yields its
    directory and the variables ``wait`` appended to a $GITHUB_ENV file."""
    directory = tmp_path / "services"
    server = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "ci_services.py"), "serve", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    github_env = tmp_path / "github_env"
    github_env.write_text("BEFORE=kept\n")
    try:
        waited = subprocess.run(
            [sys.executable, str(SCRIPTS / "ci_services.py"), "wait", str(directory)],
            env={**os.environ, "GITHUB_ENV": str(github_env)},
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert waited.returncode == 0, waited.stderr
        raw = github_env.read_bytes()
        assert b"\r" not in raw and raw.startswith(b"BEFORE=kept\n")
        exported = dict(line.split("=", 1) for line in raw.decode().splitlines()[1:])
        yield directory, exported
    finally:
        stop = subprocess.run(
            [sys.executable, str(SCRIPTS / "ci_services.py"), "stop", str(directory),
             "--timeout", "60"], capture_output=True, text=True, check=False,
        )
        out, _ = server.communicate(timeout=60)
    assert stop.returncode == 0 and server.returncode == 0, out
    assert "ci_services: stopped" in out and not (directory / "ready").exists()


def test_services_sign_with_nothing_but_the_exported_variables(
    services: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    directory, exported = services
    assert exported["KMSSIGN_KEY_ID"] == "alias/kmssign-ci"
    assert exported["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    root = x509.load_pem_x509_certificate(Path(exported["CI_ROOT_PEM"]).read_bytes())
    assert x509.load_der_x509_certificate(Path(exported["CI_ROOT_CER"]).read_bytes()) == root
    leaf, intermediate = x509.load_pem_x509_certificates(
        Path(exported["KMSSIGN_CERTIFICATE"]).read_bytes())
    assert leaf.public_key().key_size == 4096  # type: ignore[union-attr]
    assert intermediate.issuer == root.subject

    # A process with only these variables (and the OS's own) signs with the KMS key and TSA.
    env = {**os_basics(tmp_path), **exported}
    exe = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], tmp_path / "files")
    signed = kmssign("sign", str(exe), env=env)
    assert signed.returncode == 0, signed.stderr
    verified = kmssign("verify", "--ca", exported["CI_ROOT_PEM"], "--require-timestamp",
                       "--json", str(exe), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    (entry,) = json.loads(verified.stdout)["files"]
    assert entry["status"] == "verified" and entry["timestamp"]
    assert entry["signer"] and "kmssign CI Signer" in entry["signer"]

    # The acceptance job's helpers on that file: found by content; one byte spoiled.
    (tmp_path / "files" / "notes.txt").write_text("MZ but not a PE file")
    listed = tmp_path / "list.txt"
    assert acceptance.main(["collect", "--out", str(listed), str(tmp_path / "files")]) == 0
    assert listed.read_text().splitlines() == [str(exe.resolve())]
    spoiled = tmp_path / "spoiled.exe"
    assert acceptance.main(["tamper", str(exe), str(spoiled)]) == 0
    original, changed = exe.read_bytes(), spoiled.read_bytes()
    assert len(original) == len(changed)
    assert sum(a != b for a, b in zip(original, changed, strict=True)) == 1
    bad = kmssign("verify", "--ca", exported["CI_ROOT_PEM"], "--json", str(spoiled), env=env)
    assert bad.returncode == 1
    (entry,) = json.loads(bad.stdout)["files"]
    assert entry["status"] == "failed" and "digest does not match" in entry["reason"]


def test_collect_fails_on_a_tree_without_pe_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.dll").write_bytes(b"not MZ")
    assert acceptance.main(["collect", "--out", str(tmp_path / "l"), str(tmp_path / "empty")]) == 1


def test_tamper_refuses_an_unsigned_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="carries no signature"):
        acceptance.tamper(peutil.LAUNCHERS["t64.exe"], tmp_path / "x.exe")


def test_unpack_extracts_every_wheel_and_fails_without_one(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    assert acceptance.main(["unpack", str(wheels), str(tmp_path / "out")]) == 1
    with zipfile.ZipFile(wheels / "demo-1.0-py3-none-any.whl", "w") as archive:
        archive.write(peutil.LAUNCHERS["w32.exe"], "demo/bin/w32.exe")
    assert acceptance.main(["unpack", str(wheels), str(tmp_path / "out")]) == 0
    assert acceptance.is_pe(tmp_path / "out" / "demo" / "bin" / "w32.exe")


def report(capsys: Any, *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run_cli(capsys, *argv, "--json")
    return code, json.loads(out)


def test_summary_of_real_sign_and_verify_reports(
    capsys: Any, pki: TestPKI, tsa: Any, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    odd_name = "a;b.exe" if sys.platform == "win32" else "a|b.exe"  # no | on Windows
    good = peutil.copy_sample(peutil.LAUNCHERS["t64.exe"], files, odd_name)
    other = peutil.copy_sample(peutil.LAUNCHERS["w32.exe"], files)
    code, signed = report(capsys, "sign", str(good), str(other),
                          *sign_args(pki.identity("rsa2048"), "--timestamp-url", tsa.url()))
    assert code == 0
    text = summary.markdown(signed, "kmssign sign")
    lines = text.splitlines()
    assert lines[0] == "### kmssign sign: passed"
    assert lines[2] == "2 signed, 0 failed" == signed["summary"]
    assert lines[4] == "| file | status | signer | digest | timestamp | details |"
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 2
    entry = next(f for f in signed["files"] if f["path"].endswith(odd_name))
    assert entry["timestamp"] and "kmssign Test Signer rsa2048" in entry["signer"]
    path_cell = "`" + entry["path"].replace("|", "\\|") + "`"
    when = dt.datetime.fromisoformat(entry["timestamp"]).astimezone(dt.timezone.utc)
    # the time as every kmssign line gives it: UTC, to the second, with Z
    stamp = f"{when:%Y-%m-%dT%H:%M:%SZ}"
    expected = f"| {path_cell} | signed | {entry['signer']} | sha256 | {stamp} |  |"
    assert expected in rows

    not_pe = files / "notes.exe"
    not_pe.write_text("text")
    code, verified = report(capsys, "verify", "--ca", str(pki.root_pem), str(good), str(not_pe))
    assert code == 1
    text = summary.markdown(verified, "kmssign verify")
    assert text.startswith("### kmssign verify: FAILED\n")
    failed = next(line for line in text.splitlines() if "notes.exe" in line)
    assert "| failed |" in failed and "not a PE file" in failed


def test_summary_script_writes_markdown_even_without_a_report(tmp_path: Path) -> None:
    run = [sys.executable, str(SCRIPTS / "kmssign_summary.py"), "--heading", "kmssign sign"]
    missing = subprocess.run([*run, str(tmp_path / "none.json")],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 0
    assert missing.stdout.startswith("### kmssign sign: no report\n")
    (tmp_path / "empty.json").write_text("")
    empty = subprocess.run([*run, str(tmp_path / "empty.json")],
                           capture_output=True, text=True, check=False)
    assert empty.stdout == missing.stdout


ACTION = ROOT / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(inputs|steps)\.([\w-]+)(?:\.outputs\.([\w-]+))?\s*\}\}")


def workflow_files() -> list[Path]:
    return [ACTION, *sorted((ROOT / ".github" / "workflows").glob("*.yml"))]


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_no_expression_is_interpolated_into_a_script(path: Path) -> None:
    """Inputs and contexts reach shell steps through env: only (zizmor: template-injection)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    jobs = document.get("jobs") or {"action": document["runs"]}
    runs = [step["run"] for job in jobs.values() for step in job["steps"] if "run" in step]
    assert runs
    for run in runs:
        assert "${{" not in run, run


def test_action_inputs_are_the_documented_six() -> None:
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert list(action["inputs"]) == [
        "files", "key-id", "certificate", "timestamp-urls", "region", "ca"
    ]
    assert action["runs"]["using"] == "composite"


def expand(value: str, inputs: dict[str, str], outputs: dict[str, dict[str, str]]) -> str:
    """An env value of a step, with the two kinds of expression the action uses."""

    def one(match: re.Match[str]) -> str:
        kind, name, output = match.groups()
        return inputs[name] if kind == "inputs" else outputs[name][output]

    expanded = EXPRESSION.sub(one, str(value))
    assert "${{" not in expanded, f"unsupported expression in {value!r}"
    return expanded


def run_action(
    inputs: dict[str, str], base_env: dict[str, str], workdir: Path, runner: Path
) -> dict[str, dict[str, str]]:
    """Run action.yml's steps as GitHub's runner runs a composite action's bash steps."""
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    values = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    values.update(inputs)
    outputs: dict[str, dict[str, str]] = {}
    for number, step in enumerate(action["runs"]["steps"]):
        assert step["shell"] == "bash"
        output_file = runner / f"output-{number}"
        output_file.write_text("")
        env = {**base_env, "GITHUB_OUTPUT": str(output_file)}
        env.update({k: expand(v, values, outputs) for k, v in (step.get("env") or {}).items()})
        script = runner / f"step-{number}.sh"
        script.write_text(step["run"])
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                              cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        assert proc.returncode == 0, f"{step['name']}:\n{proc.stdout}\n{proc.stderr}"
        lines = output_file.read_text().splitlines()
        outputs[step.get("id", str(number))] = dict(line.split("=", 1) for line in lines)
    return outputs


@pytest.mark.slow
@pytest.mark.posix  # bash
@pytest.mark.network  # the action pip-installs kmssign and its dependencies
def test_action_installs_signs_verifies_and_writes_the_summary(
    services: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    _, exported = services
    workdir = tmp_path / "workspace"
    for name in ("t64.exe", "w32.exe"):
        peutil.copy_sample(peutil.LAUNCHERS[name], workdir / "dist")
    peutil.copy_sample(peutil.LAUNCHERS["t64-arm.exe"], workdir / "dist" / "sub")
    (workdir / "dist" / "sub" / "data.bin").write_bytes(b"not a PE file")
    runner = tmp_path / "runner"
    runner.mkdir()
    step_summary = runner / "summary.md"
    step_summary.write_text("")
    aws = {k: v for k, v in exported.items() if k.startswith("AWS_")}
    base_env = {**os_basics(tmp_path), "RUNNER_OS": "Linux",
                "RUNNER_TEMP": str(runner), "GITHUB_ACTION_PATH": str(ROOT),
                "GITHUB_STEP_SUMMARY": str(step_summary), **aws}
    inputs = {
        "files": "dist/*.exe\n  dist/sub",
        "key-id": exported["KMSSIGN_KEY_ID"],
        "certificate": exported["KMSSIGN_CERTIFICATE"],
        "timestamp-urls": f"{exported['KMSSIGN_TIMESTAMP_URLS']},",
        "region": exported["AWS_REGION"],
        "ca": exported["CI_ROOT_PEM"],  # the test PKI, not Microsoft's root program
    }
    outputs = run_action(inputs, base_env, workdir, runner)

    signed = json.loads(Path(outputs["sign"]["report"]).read_text())
    assert signed["summary"] == "3 signed, 0 failed"
    verified = json.loads(Path(outputs["verify"]["report"]).read_text())
    assert verified["ok"] and len(verified["files"]) == 3
    assert all(f["timestamp"] and "kmssign CI Signer" in f["signer"] for f in verified["files"])
    text = step_summary.read_text()
    assert text.startswith("### kmssign sign: passed\n")
    assert "### kmssign verify: passed\n" in text
    assert text.count("| signed |") == 3 and text.count("| verified |") == 3
    env = {**os_basics(tmp_path), **aws}
    chained = kmssign("verify", "--ca", exported["CI_ROOT_PEM"], "--require-timestamp",
                      str(workdir / "dist"), env=env)
    assert chained.returncode == 0, chained.stdout + chained.stderr
