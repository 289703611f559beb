"""Build the sample-app wheel with kmssign's hook and verify every Windows binary in it.

    python sample_app/build_and_verify.py --local-services             # what `nox -s sample` runs
    KMSSIGN_KEY_ID=... AWS_...=... python sample_app/build_and_verify.py --ca root.pem

With ``--local-services`` (repository only: it uses the test helpers in tests/) the build
signs with a throwaway PKI, a key in moto's KMS server on 127.0.0.1 and a local RFC 3161
server. Otherwise the build uses whatever KMSSIGN_* / AWS_* variables are set, and
``--ca`` names the root the signatures must chain to.

Steps: build a kmssign wheel from the repository (the isolated build environment installs
it from PIP_FIND_LINKS / UV_FIND_LINKS), build sample-app's wheel with each ``--frontend``
(``build`` = ``python -m build --wheel``, ``hatch`` = ``hatch build -t wheel``), unzip it
and run ``kmssign verify --require-timestamp`` on every PE member. Exit status 0 only when
every wheel holds the expected binaries and every one of them verifies.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXPECTED = ("sample_app/bin/hello.exe",)  # greet.dll too when mingw-w64 is present


def run(cmd: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=None if env is None else dict(env), cwd=cwd)


def build_kmssign_wheel(out: Path) -> Path:
    """A kmssign wheel of this repository in ``out`` (for the isolated build environment)."""
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)])
    return out


def with_find_links(env: Mapping[str, str], wheel_dir: Path) -> dict[str, str]:
    """``env`` with ``wheel_dir`` added before any find-links already configured."""
    result = dict(env)
    for name in ("PIP_FIND_LINKS", "UV_FIND_LINKS"):
        separator = " " if name.startswith("PIP") else ","
        before = result.get(name, "").strip()
        result[name] = f"{wheel_dir}{separator}{before}" if before else str(wheel_dir)
    return result


def build_wheel(app: Path, out: Path, frontend: str, env: Mapping[str, str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if frontend == "build":
        run([sys.executable, "-m", "build", "--wheel", "-o", str(out), str(app)], env)
    else:
        run([sys.executable, "-m", "hatch", "build", "-t", "wheel", str(out)], env, cwd=app)
    wheels = sorted(out.glob("sample_app-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one sample_app wheel in {out}, found {len(wheels)}")
    return wheels[0]


def verify_wheel(wheel: Path, ca: Path, tsa_ca: Path | None) -> bool:
    """Unzip ``wheel`` and verify every PE member with ``kmssign verify``."""
    from kmssign._internal.pe.image import looks_like_pe
    from kmssign.frontends.cli.main import main

    with tempfile.TemporaryDirectory(prefix="sample-app-wheel-") as tmp:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp)
            names = archive.namelist()
        members = [n for n in names if looks_like_pe(Path(tmp, n))]
        missing = [n for n in EXPECTED if n not in names]
        print(f"{wheel.name}: PE members: {', '.join(members) or 'none'}", flush=True)
        if missing:
            print(f"{wheel.name}: missing {', '.join(missing)}", file=sys.stderr)
            return False
        args = ["verify", "--require-timestamp", "--ca", str(ca)]
        if tsa_ca is not None:
            args += ["--tsa-ca", str(tsa_ca)]
        return main([*args, *(str(Path(tmp, n)) for n in members)]) == 0


@contextlib.contextmanager
def local_services(workdir: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """Throwaway PKI, moto KMS and RFC 3161 server; yields (environment, root CA)."""
    sys.path.insert(0, str(REPO))
    from cryptography.hazmat.primitives import serialization
    from moto.server import ThreadedMotoServer
    from tests.support.fixtures_kms import create_kms_key, kms_client
    from tests.support.pki import TestPKI
    from tests.support.tsa_server import LoopbackTSA

    pki = TestPKI.create(workdir / "pki")
    tsa = LoopbackTSA(pki).start()
    kms = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    kms.start()
    try:
        endpoint = f"http://127.0.0.1:{kms.get_host_and_port()[1]}"
        client = kms_client(endpoint)
        key_id = create_kms_key(client)
        public_key = serialization.load_der_public_key(
            client.get_public_key(KeyId=key_id)["PublicKey"]
        )
        cert = pki.leaf_for(public_key, "sample-app test signer", workdir / "signer.pem")
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "KMSSIGN_KEY_ID": key_id,
            "KMSSIGN_CERTIFICATE": str(cert),
            "KMSSIGN_TIMESTAMP_URLS": tsa.url(),
            "KMSSIGN_TIMESTAMP": "required",
        }
        yield env, pki.root_pem
    finally:
        kms.stop()
        tsa.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontend", action="append", choices=("build", "hatch"),
                        help="how to build (repeatable; default: build and hatch)")
    parser.add_argument("--local-services", action="store_true",
                        help="sign against a throwaway PKI, local KMS and TSA (repository only)")
    parser.add_argument("--ca", type=Path, help="root the signatures must chain to")
    parser.add_argument("--tsa-ca", type=Path, help="root of the timestamp server (default: --ca)")
    parser.add_argument("--kmssign-wheel-dir", type=Path,
                        help="directory with a kmssign wheel (default: build one)")
    parser.add_argument("--out", type=Path, help="where to leave the wheels (default: temporary)")
    args = parser.parse_args(argv)
    if not args.local_services and args.ca is None:
        parser.error("give --ca ROOT.pem, or --local-services")

    with tempfile.TemporaryDirectory(prefix="sample-app-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        env = dict(os.environ)
        ca, tsa_ca = args.ca, args.tsa_ca
        if args.local_services:
            service_env, ca = stack.enter_context(local_services(work))
            env.update(service_env)
        wheel_dir = args.kmssign_wheel_dir or build_kmssign_wheel(work / "kmssign-wheel")
        env = with_find_links(env, wheel_dir.resolve())
        # A fresh hatch data directory: hatch keeps its build environment there and would
        # otherwise reuse a kmssign installed by an earlier run of the same version.
        env["HATCH_DATA_DIR"] = str(work / "hatch-data")
        ok = True
        for frontend in args.frontend or ["build", "hatch"]:
            out = (args.out or work / "dist") / frontend
            wheel = build_wheel(HERE, out, frontend, env)
            good = verify_wheel(wheel, ca, tsa_ca)
            print(f"{frontend}: {wheel.name}: {'verified' if good else 'FAILED'}", flush=True)
            ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
