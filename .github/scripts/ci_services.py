"""Stand-in signing services for a CI job: moto's KMS, a throwaway PKI and an RFC 3161 TSA.

    python .github/scripts/ci_services.py serve DIR   # start, write DIR/*, serve until DIR/stop
    python .github/scripts/ci_services.py wait DIR    # wait for DIR/ready; copy env to $GITHUB_ENV
    python .github/scripts/ci_services.py stop DIR    # ask the server to stop, wait until it has

``serve`` reuses the test suite's parts (tests/support/kms_server.py, tests/support/tsa_server.py,
tests/support/pki.py): moto's KMS server and the loopback TSA on 127.0.0.1, an RSA_4096
SIGN_VERIFY key under the alias ``alias/kmssign-ci``, and a code-signing certificate for
that key issued by a fresh test root through an intermediate. It writes into DIR:

- ``root.pem`` / ``root.cer``: the test root (PEM; DER for Windows's certificate stores),
  which is also the root of the TSA's certificate;
- ``signer.pem``: the leaf issued for the KMS key, then the intermediate (``certificate``);
- ``services.env``: ``NAME=value`` lines (GitHub's ``$GITHUB_ENV`` format) that point
  boto3 and kmssign at the services: ``AWS_*``, ``KMSSIGN_KEY_ID``,
  ``KMSSIGN_CERTIFICATE``, ``KMSSIGN_TIMESTAMP_URLS``, and ``CI_ROOT_PEM``/``CI_ROOT_CER``;
- ``ready`` last, once everything above is in place.

Nothing here is a secret: the keys are made per run and die with the process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEY_ALIAS = "alias/kmssign-ci"
KEY_SPEC = "RSA_4096"
POLL = 0.2


def serve(directory: Path) -> int:
    sys.path.insert(0, str(REPO))
    from cryptography.hazmat.primitives import serialization
    from tests.support.kms_server import KmsServer
    from tests.support.pki import TestPKI, write_pem
    from tests.support.tsa_server import LoopbackTSA

    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "stop"):
        (directory / stale).unlink(missing_ok=True)
    pki = TestPKI.create(directory / "pki")
    kms = KmsServer(directory / "moto.log").start()
    tsa = LoopbackTSA(pki).start()
    try:
        key_id = kms.create_key(KEY_SPEC, alias=KEY_ALIAS)
        public_key = serialization.load_der_public_key(kms.public_key_der(key_id))
        signer = pki.leaf_for(
            public_key,  # type: ignore[arg-type]
            "kmssign CI Signer", directory / "signer.pem",
        )
        root_pem = write_pem(directory / "root.pem", pki.root.cert)
        root_cer = directory / "root.cer"
        root_cer.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.DER))
        env = {
            **kms.environment(),
            "AWS_CONFIG_FILE": str(directory / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(directory / "no-aws-credentials"),
            "KMSSIGN_KEY_ID": KEY_ALIAS,
            "KMSSIGN_CERTIFICATE": str(signer),
            "KMSSIGN_TIMESTAMP_URLS": tsa.url(),
            "KMSSIGN_TIMESTAMP": "required",
            "CI_KEY_ARN": kms.key_arn(key_id),
            "CI_ROOT_PEM": str(root_pem),
            "CI_ROOT_CER": str(root_cer),
        }
        # "\n" line ends on every OS: $GITHUB_ENV is read line by line
        (directory / "services.env").write_bytes(
            "".join(f"{name}={value}\n" for name, value in env.items()).encode()
        )
        (directory / "ready").write_text(f"{os.getpid()}\n", encoding="utf-8")
        print(f"ci_services: KMS {kms.endpoint_url}, key {KEY_ALIAS}, TSA {tsa.url()}",
              flush=True)
        while not (directory / "stop").exists():
            time.sleep(POLL)
    finally:
        tsa.stop()
        kms.stop()
        (directory / "ready").unlink(missing_ok=True)
    print("ci_services: stopped", flush=True)
    return 0


def wait(directory: Path, timeout: float) -> int:
    """Wait for ``ready``; append ``services.env`` to ``$GITHUB_ENV`` when it is set."""
    deadline = time.monotonic() + timeout
    while not (directory / "ready").exists():
        if time.monotonic() > deadline:
            log = directory / "moto.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            print(f"ci_services: not ready after {timeout:.0f} s\n{tail}", file=sys.stderr)
            return 1
        time.sleep(POLL)
    lines = (directory / "services.env").read_text(encoding="utf-8")
    github_env = os.environ.get("GITHUB_ENV")
    if github_env:
        with open(github_env, "a", encoding="utf-8", newline="\n") as out:
            out.write(lines)
    print(f"ci_services: ready ({len(lines.splitlines())} variables)", flush=True)
    return 0


def stop(directory: Path, timeout: float) -> int:
    (directory / "stop").write_text("", encoding="utf-8")
    deadline = time.monotonic() + timeout
    while (directory / "ready").exists():
        if time.monotonic() > deadline:
            print(f"ci_services: still running after {timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(POLL)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=("serve", "wait", "stop"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds that wait and stop wait at most (default 180)")
    args = parser.parse_args(argv)
    directory = args.directory.resolve()
    if args.command == "serve":
        return serve(directory)
    if args.command == "wait":
        return wait(directory, args.timeout)
    return stop(directory, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
