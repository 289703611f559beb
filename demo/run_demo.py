"""kmssign demo: sign and verify real Windows binaries with a key in (a local) AWS KMS.

    python demo/run_demo.py            # what `nox -s demo` runs
    python demo/run_demo.py --keep     # keep the work directory to look at the results
    python demo/run_demo.py --verbose  # show the full output of every command

Everything happens in a fresh temporary directory, with local stand-ins for the services
a real release uses: moto's KMS server on 127.0.0.1 holds the RSA_4096 signing key, a
throwaway root CA issues the code-signing certificate from the CSR that ``kmssign csr``
makes with that key, and a loopback RFC 3161 server timestamps the signatures. A copy of
sample_app is then built twice with kmssign's hooks on, settings from its
``[tool.kmssign]`` plus KMSSIGN_* / AWS_* variables: as a wheel with ``hatch build`` and
as a onedir app with its PyInstaller spec. Every Windows binary produced is verified with
``kmssign verify`` and, when it is installed, ``osslsigncode verify``.

The last line is ``demo: N files signed and verified``; exit status 0. Any failure ends
with one ``demo: error: ...`` line and exit status 1. The servers are stopped and the
temporary directory removed either way; the repository is never written to.

Needs kmssign (``pip install -e .``), moto[server], hatch and pyinstaller; mingw-w64
(``x86_64-w64-mingw32-gcc``) to compile sample_app's helpers (pip's Windows launcher
stands in without it) and network access to the package index for hatch's isolated build
environment.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# No __pycache__ for the demo's own modules: the demo writes nothing into the repository.
sys.dont_write_bytecode = True

REPO = Path(__file__).resolve().parent.parent
# The local stand-ins for KMS, the CA and the timestamp server are kmssign sandbox's
# (kmssign/_internal/sandbox/): an installed kmssign has them, no file of tests/ is needed.
from kmssign._internal.pe.image import looks_like_pe  # noqa: E402
from kmssign._internal.sandbox.kms import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, LocalKms  # noqa: E402
from kmssign._internal.sandbox.pki import Authority, pem  # noqa: E402
from kmssign._internal.sandbox.tsa import Stamper, TimestampServer  # noqa: E402
from kmssign.errors import KmsSignError  # noqa: E402

SAMPLE_APP = REPO / "sample_app"
# The alias sample_app's [tool.kmssign] names as key-id: the demo key takes it, so the
# project's own setting is used unchanged.
KEY_ALIAS = "alias/sample-app-signing"
SUBJECT = "CN=Sample App Demo Publisher,O=kmssign demo,C=DE"
TAIL_LINES = 25
OSSL_OK = ("Signature verification: ok", "Timestamp Server Signature verification: ok")


class DemoError(Exception):
    """A step failed; the message is the one line the demo ends with."""


class Demo:
    """The steps, in order; ``run()`` returns how many files were signed and verified."""

    def __init__(self, work: Path, stack: contextlib.ExitStack, verbose: bool) -> None:
        self.work = work
        self.stack = stack
        self.verbose = verbose
        self._step = 0

    # -- output --
    def step(self, text: str) -> None:
        self._step += 1
        print(f"\n[{self._step}] {text}", flush=True)

    @staticmethod
    def note(text: str) -> None:
        print(f"    {text}", flush=True)

    def command(
        self, cmd: Sequence[str], what: str, *, env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> str:
        """Run ``cmd``; return its output (stdout and stderr); DemoError when it fails."""
        shown = _short(shlex.join(cmd), self.work)
        self.note(f"$ {shown}")
        try:
            proc = subprocess.run(
                list(cmd), env=None if env is None else dict(env), cwd=cwd or self.work,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
            )
        except OSError as exc:
            raise DemoError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from exc
        lines = proc.stdout.splitlines()
        if self.verbose:
            for line in lines:
                print(f"      | {line}")
        if proc.returncode != 0:
            if not self.verbose:
                for line in lines[-TAIL_LINES:]:
                    print(f"      | {line}", file=sys.stderr)
            raise DemoError(f"{what} failed (exit status {proc.returncode}); output above")
        return proc.stdout

    def show_kmssign_lines(self, output: str) -> None:
        """kmssign's own log lines of a build (what it signed), without the build's chatter."""
        for line in output.splitlines():
            start = line.find("kmssign: ")
            if start >= 0:
                self.note(_short(line[start:].strip(), self.work))

    # -- the steps --
    def run(self) -> int:
        self.step(f"Work directory {self.work} ($WORK below)")
        kms = self.start_kms()
        key_arn = self.create_key(kms)
        ca = self.create_ca()
        csr = self.make_csr(kms)
        cert = self.issue_certificate(ca, csr)
        tsa, stamper = self.start_tsa(ca)
        env = self.build_environment(kms, cert, tsa)
        app = self.copy_sample_app()
        wheel = self.build_wheel(app, env)
        onedir = self.build_pyinstaller(app, env)
        files = self.collect_binaries(wheel, onedir)
        self.verify_with_kmssign(files)
        self.verify_with_osslsigncode(files)
        self.note(f"KMS key {key_arn}; {stamper.issued} timestamp requests answered")
        return len(files)

    def start_kms(self) -> LocalKms:
        self.step("Start moto's AWS KMS server on 127.0.0.1")
        try:
            kms = LocalKms().start()
        except KmsSignError as exc:
            raise DemoError(str(exc)) from exc
        self.stack.callback(kms.stop)
        self.note(f"KMS endpoint {kms.endpoint_url}")
        return kms

    def create_key(self, kms: LocalKms) -> str:
        self.step(f"Create an RSA_4096 SIGN_VERIFY key in KMS with the alias {KEY_ALIAS}")
        arn = kms.create_key("RSA_4096", KEY_ALIAS)
        self.note(f"key {arn}")
        self.note(f"{KEY_ALIAS} is the key-id in sample_app's [tool.kmssign]")
        return arn

    def create_ca(self) -> Authority:
        self.step("Create a throwaway root CA (it stands in for your certificate authority)")
        ca = Authority.create()
        (self.work / "root.pem").write_bytes(pem(ca.cert))
        self.note(f"root certificate {_short(str(self.work / 'root.pem'), self.work)}: "
                  f"{ca.cert.subject.rfc4514_string()}")
        return ca

    def make_csr(self, kms: LocalKms) -> Path:
        self.step("Make a certificate signing request with the KMS key: kmssign csr")
        csr = self.work / "req.csr"
        self.command(
            [sys.executable, "-m", "kmssign", "csr", "--key-id", KEY_ALIAS,
             "--subject", SUBJECT, "-o", str(csr), "--endpoint-url", kms.endpoint_url],
            "kmssign csr", env=self.base_env(kms),
        )
        if not csr.is_file():
            raise DemoError(f"kmssign csr did not write {csr}")
        return csr

    def issue_certificate(self, ca: Authority, csr_path: Path) -> Path:
        self.step("The CA checks the CSR and issues the code-signing certificate for the key")
        try:
            cert = ca.issue_from_csr(csr_path.read_bytes())
        except ValueError as exc:
            raise DemoError(f"the CA refused the CSR: {exc}") from exc
        path = self.work / "sample-app.pem"
        path.write_bytes(pem(cert))
        self.note(f"certificate {_short(str(path), self.work)}: {cert.subject.rfc4514_string()}, "
                  f"issued by {cert.issuer.rfc4514_string()}")
        return path

    def start_tsa(self, ca: Authority) -> tuple[TimestampServer, Stamper]:
        self.step("Start an RFC 3161 timestamp server on 127.0.0.1")
        tsa_cert, tsa_key = ca.timestamp_authority()
        (self.work / "tsa.pem").write_bytes(pem(tsa_cert))
        stamper = Stamper(tsa_cert, tsa_key)
        tsa = TimestampServer(stamper).start()
        self.stack.callback(tsa.stop)
        self.note(f"timestamp URL {tsa.url}")
        return tsa, stamper

    def base_env(self, kms: LocalKms) -> dict[str, str]:
        """The caller's environment without AWS/KMSSIGN/HATCH settings, plus the local KMS.

        The AWS config and credentials files point into the work directory (where there
        are none), so nothing from the user's real AWS setup is read.
        """
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("AWS_", "KMSSIGN_", "HATCH_"))}
        env.update({
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": kms.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        })
        env["AWS_CONFIG_FILE"] = str(self.work / "no-aws-config")
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.work / "no-aws-credentials")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # Temporary files of the tools (hatch, uv, PyInstaller) go into the work directory.
        tmp = self.work / "tmp"
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
        return env

    def build_environment(self, kms: LocalKms, cert: Path, tsa: TimestampServer) -> dict[str, str]:
        self.step("Point the builds at the demo's KMS, certificate and timestamp server")
        env = self.base_env(kms)
        settings = {
            "KMSSIGN_CERTIFICATE": str(cert),
            "KMSSIGN_TIMESTAMP_URLS": tsa.url,
        }
        env.update(settings)
        for name in ("AWS_ENDPOINT_URL", *settings):
            self.note(f"{name}={_short(env[name], self.work)}")
        self.note("every other setting comes from sample_app's [tool.kmssign] unchanged")
        # Hatch's and PyInstaller's own state goes into the work directory too.
        env["HATCH_DATA_DIR"] = str(self.work / "hatch" / "data")
        env["HATCH_CACHE_DIR"] = str(self.work / "hatch" / "cache")
        env["PYINSTALLER_CONFIG_DIR"] = str(self.work / "pyinstaller" / "config")
        return env

    def copy_sample_app(self) -> Path:
        self.step("Copy sample_app into the work directory (the repository stays untouched)")
        app = self.work / "sample_app"
        shutil.copytree(SAMPLE_APP, app, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "dist", "build"))
        self.note(f"copied to {_short(str(app), self.work)}")
        return app

    def build_wheel(self, app: Path, env: dict[str, str]) -> Path:
        self.step("Build the wheel with hatch build (sample_app's mingw hook, then kmssign's)")
        # Hatch installs the build requirements (hatchling, kmssign) into an isolated
        # environment; kmssign is not on the package index, so offer a wheel of this
        # repository through find-links.
        wheels = self.work / "kmssign-wheel"
        self.command(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "-w", str(wheels), str(REPO)],
            "building a kmssign wheel for hatch's build environment", env=env,
        )
        env = dict(env)
        for name, separator in (("PIP_FIND_LINKS", " "), ("UV_FIND_LINKS", ",")):
            before = env.get(name, "").strip()
            env[name] = f"{wheels}{separator}{before}" if before else str(wheels)
        out = self.work / "wheel-dist"
        output = self.command([sys.executable, "-m", "hatch", "build", "-t", "wheel", str(out)],
                              "hatch build", env=env, cwd=app)
        self.show_kmssign_lines(output)
        built = sorted(out.glob("sample_app-*.whl"))
        if len(built) != 1:
            raise DemoError(f"hatch build made {len(built)} sample_app wheels, expected 1")
        self.note(f"wheel {_short(str(built[0]), self.work)}")
        return built[0]

    def build_pyinstaller(self, app: Path, env: dict[str, str]) -> Path:
        self.step("Build the onedir app with PyInstaller and sample_app.spec")
        base = self.work / "pyinstaller"
        output = self.command(
            [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
             "--distpath", str(base / "dist"), "--workpath", str(base / "build"),
             "sample_app.spec"],
            "PyInstaller", env=env, cwd=app,
        )
        self.show_kmssign_lines(output)
        onedir = base / "dist" / "sample-app"
        program = onedir / ("sample-app.exe" if sys.platform == "win32" else "sample-app")
        if not program.is_file():
            raise DemoError(f"PyInstaller did not produce {program}")
        listed = self.command([str(program), "--list"], "running the built app", env=env)
        for line in listed.splitlines():
            self.note(f"the app lists its helper {_short(line, self.work)}")
        return onedir

    def collect_binaries(self, wheel: Path, onedir: Path) -> list[Path]:
        self.step("Collect every Windows (PE) binary the two builds produced")
        unpacked = self.work / "wheel-content"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
        in_wheel = sorted(p for p in unpacked.rglob("*") if looks_like_pe(p))
        in_onedir = sorted(p for p in onedir.rglob("*") if looks_like_pe(p))
        groups = (("wheel", in_wheel, unpacked), ("PyInstaller", in_onedir, onedir))
        for label, found, root in groups:
            if not found:
                raise DemoError(f"the {label} build holds no Windows binary")
            for path in found:
                self.note(f"{label}: {path.relative_to(root).as_posix()}")
        return in_wheel + in_onedir

    def verify_with_kmssign(self, files: list[Path]) -> None:
        self.step("kmssign verify --ca root.pem --require-timestamp on every binary")
        output = self.command(
            [sys.executable, "-m", "kmssign", "verify", "--ca", "root.pem",
             "--require-timestamp", *(_relative(f, self.work) for f in files)],
            "kmssign verify",
        )
        for line in output.splitlines():
            self.note(_short(line, self.work))

    def verify_with_osslsigncode(self, files: list[Path]) -> None:
        self.step("osslsigncode verify (an independent Authenticode implementation)")
        tool = shutil.which("osslsigncode")
        if tool is None:
            self.note("osslsigncode is not on PATH; skipped (apt-get install osslsigncode)")
            return
        for path in files:
            name = _relative(path, self.work)
            output = self.command(
                ["osslsigncode", "verify", "-CAfile", "root.pem", "-TSA-CAfile", "root.pem",
                 "-in", name],
                f"osslsigncode verify {name}",
            )
            missing = [line for line in OSSL_OK if line not in output]
            if missing:
                raise DemoError(f"osslsigncode verify {name}: no '{missing[0]}' line")
            self.note(f"    {OSSL_OK[0]}; {OSSL_OK[1]}")


def _short(text: str, work: Path) -> str:
    """``text`` with the work directory shown as ``$WORK`` and this Python as ``python``."""
    return text.replace(sys.executable, "python").replace(str(work), "$WORK")


def _relative(path: Path, work: Path) -> str:
    """``path`` relative to the work directory (commands there run with it as cwd)."""
    return path.relative_to(work).as_posix()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (its path is printed first)")
    parser.add_argument("--verbose", action="store_true",
                        help="print the full output of every command")
    args = parser.parse_args(argv)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="kmssign-demo-")).resolve()
    try:
        with contextlib.ExitStack() as stack:
            count = Demo(work, stack, args.verbose).run()
    except DemoError as exc:
        print(f"demo: error: {_short(str(exc), work)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: error: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"\n(work directory kept: {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nAll servers stopped; finished in {time.monotonic() - started:.0f} s.")
    print(f"demo: {count} files signed and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
