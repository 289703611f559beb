"""Each subcommand's arguments: what adds its parser to ``kmssign``'s, and the groups of
flags several commands share (the two-step commands' module uses them too)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kmssign.frontends.cli.parsing import Append, Store


def add_kms(p: argparse.ArgumentParser) -> None:
    from kmssign.config import DEFAULT_KMS_TIMEOUT

    g = p.add_argument_group("AWS KMS")
    g.add_argument("--key-id", metavar="ID", help="KMS key id, ARN or alias/NAME")
    g.add_argument("--region", metavar="R", help="AWS region of the key")
    g.add_argument(
        "--profile", metavar="P", help="AWS profile (default credential chain otherwise)"
    )
    g.add_argument("--endpoint-url", metavar="URL", help="KMS endpoint (e.g. a local test server)")
    g.add_argument(
        "--kms-timeout",
        type=float,
        metavar="SECONDS",
        help=f"total time for one KMS call, retries included (default {DEFAULT_KMS_TIMEOUT:g})",
    )
    g.add_argument(
        "--config",
        metavar="PYPROJECT",
        type=Path,
        help="pyproject.toml to read [tool.kmssign] from (default: nearest one)",
    )


def add_allow_empty(
    p: argparse.ArgumentParser, verb: str, what: str = "PE file or MSI package"
) -> None:
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help=f"exit 0 when there is no {what} to {verb} (default: an error)",
    )


def add_output(p: argparse.ArgumentParser, jobs_default: int = 16) -> None:
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="print failures and errors only")
    g.add_argument("--json", action="store_true", help="print a machine-readable JSON report")
    g.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help=f"requests in flight to each service, files verified at once (default "
        f"{jobs_default}; 1 = sequential)",
    )


def add_timestamp_timeout(g: argparse._ActionsContainer) -> None:
    from kmssign.config import DEFAULT_TIMESTAMP_TIMEOUT

    g.add_argument(
        "--timestamp-timeout",
        type=float,
        metavar="SECONDS",
        help="total time for one timestamp request: connect, send and the whole reply "
        f"(default {DEFAULT_TIMESTAMP_TIMEOUT:g})",
    )


def add_key(p: argparse.ArgumentParser) -> None:
    k = p.add_argument_group("key and certificate")
    k.add_argument("--key-file", type=Path, metavar="KEY", help="private key file (PEM/DER)")
    k.add_argument(
        "--certificate",
        "--cert",
        dest="certificate",
        action=Store,
        type=Path,
        metavar="CERT",
        help="signing certificate: PEM, DER, PEM bundle (leaf first) or PKCS#7 .p7b",
    )
    k.add_argument(
        "--chain",
        type=Path,
        action="append",
        metavar="PEM",
        help="intermediate certificates (repeatable)",
    )
    k.add_argument("--digest", choices=("sha256", "sha384", "sha512"), help="default sha256")
    k.add_argument("--signer", metavar="NAME", help="aws-kms, key-file, pkcs11 or one a "
                   "package provides (default: the one the key setting names)")
    add_kms(p)
    h = p.add_argument_group("PKCS#11 token or HSM (the PIN: KMSSIGN_PKCS11_PIN or a PIN file)")
    h.add_argument("--pkcs11-module", type=Path, metavar="LIB", help="the token's PKCS#11 library")
    h.add_argument("--pkcs11-token", metavar="LABEL", help="token label")
    h.add_argument("--pkcs11-key", metavar="KEY", help="label, id:HEX or pkcs11: URI (RFC 7512)")
    h.add_argument("--pkcs11-pin-file", type=Path, metavar="FILE", help="file with the user PIN")


def add_signature(p: argparse.ArgumentParser, *, append: bool) -> None:
    s = p.add_argument_group("signature")
    s.add_argument("--description", metavar="TEXT", help="program name shown by Windows")
    s.add_argument("--url", metavar="URL", help="program URL shown by Windows")
    if append:
        s.add_argument(
            "--append",
            action="store_true",
            help="add a nested signature instead of replacing the existing one",
        )
    s.add_argument(
        "--skip-signed",
        dest="skip_signed",
        action="store_true",
        default=None,
        help="leave files that already carry a signature as they are (default)",
    )
    s.add_argument(
        "--no-skip-signed",
        dest="skip_signed",
        action="store_false",
        help="replace existing signatures",
    )
    s.add_argument(
        "--include", action="append", metavar="GLOB", help="only files matching GLOB (repeatable)"
    )
    s.add_argument(
        "--exclude", action="append", metavar="GLOB", help="skip files matching GLOB (repeatable)"
    )


def add_timestamp_urls(g: argparse._ActionsContainer) -> None:
    g.add_argument(
        "--timestamp-urls",
        "--timestamp-url",
        dest="timestamp_urls",
        action=Append,
        metavar="URL",
        help="RFC 3161 server, tried in order (repeatable; a comma-separated list too)",
    )


def add_timestamp(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("timestamp")
    add_timestamp_urls(t)
    t.add_argument(
        "--timestamp",
        choices=("required", "optional", "off"),
        help="required (default): fail when no server answers; optional: warn",
    )
    t.add_argument("--no-timestamp", action="store_true", help="same as --timestamp off")
    add_timestamp_timeout(t)


def add_dry_run(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be signed and skipped; call no service",
    )


MSI_NOTE = (
    "Files are found by content: PE files (.exe, .dll, .pyd, ...) and Windows Installer "
    "packages (.msi, .msm, .msp; not .mst transforms). A package's signature is its "
    "\\x05DigitalSignature stream. kmssign never writes \\x05MsiDigitalSignatureEx: a new "
    "signature that replaces the old one removes it; --append and `kmssign timestamp` keep "
    "it, and the signatures it serves stay valid."
)


def _add_sign_command(sub: Any) -> None:
    sign = sub.add_parser(
        "sign", help="sign PE files and MSI packages (directories: every one below them)",
        epilog=MSI_NOTE,
    )
    sign.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    add_key(sign)
    add_signature(sign, append=True)
    add_timestamp(sign)
    sign.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT",
        help="write the signed file here (one input file only)",
    )
    add_dry_run(sign)
    add_allow_empty(sign, "sign")
    add_output(sign)


def _add_wheel_command(sub: Any) -> None:
    wheel = sub.add_parser(
        "wheel", help="sign the PE files inside wheels and update RECORD (directories: *.whl)"
    )
    wheel.add_argument("paths", nargs="+", type=Path, metavar="WHEEL")
    add_key(wheel)
    add_signature(wheel, append=False)
    add_timestamp(wheel)
    wheel.add_argument(
        "-w",
        "--wheel-dir",
        dest="dest_dir",
        type=Path,
        metavar="DIR",
        help="write the signed wheels into DIR (default: rewrite them in place)",
    )
    add_dry_run(wheel)
    add_allow_empty(wheel, "sign", "wheel")
    add_output(wheel)


def _add_verify_command(sub: Any) -> None:
    verify = sub.add_parser("verify", help="verify signatures, chains and timestamps")
    verify.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    verify.add_argument(
        "--ca",
        type=Path,
        action="append",
        metavar="PEM",
        help="trusted root certificates, in place of Microsoft's trusted root program "
        "(repeatable)",
    )
    verify.add_argument(
        "--no-chain",
        action="store_true",
        help="check digests, signatures and timestamps, not whom the chains lead to",
    )
    verify.add_argument(
        "--tsa-ca",
        type=Path,
        action="append",
        metavar="PEM",
        help="trusted roots for timestamp servers (default: --ca)",
    )
    verify.add_argument(
        "--require-timestamp",
        action="store_true",
        help="fail files whose signature has no valid timestamp",
    )
    verify.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="report unsigned PE files (loose or in wheels) without failing",
    )
    verify.add_argument(
        "--require-signed",
        action="store_true",
        help="unsigned PE files fail (the default; kept for existing scripts)",
    )
    verify.add_argument(
        "--include", action="append", metavar="GLOB",
        help="only files (or wheel members) matching GLOB (repeatable)",
    )
    verify.add_argument(
        "--exclude", action="append", metavar="GLOB",
        help="skip files (or wheel members) matching GLOB (repeatable)",
    )
    add_allow_empty(verify, "verify")
    add_output(verify)


def _add_timestamp_command(sub: Any) -> None:
    stamp = sub.add_parser("timestamp", help="add a timestamp to signatures that have none")
    stamp.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    add_timestamp_urls(stamp)
    stamp.add_argument(
        "--config",
        metavar="PYPROJECT",
        type=Path,
        help="pyproject.toml to read [tool.kmssign] from",
    )
    add_timestamp_timeout(stamp)
    add_allow_empty(stamp, "timestamp")
    add_output(stamp)


def _add_csr_command(sub: Any) -> None:
    csr = sub.add_parser("csr", help="make a certificate signing request signed by a KMS key")
    csr.add_argument(
        "--subject",
        required=True,
        metavar="DN",
        help='e.g. "CN=Example Ltd,O=Example Ltd,L=Berlin,C=DE"',
    )
    csr.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                     help="where to write the request (PEM)")
    csr.add_argument("--digest", choices=("sha256", "sha384", "sha512"), help="default sha256")
    add_kms(csr)


def _add_pubkey_command(sub: Any) -> None:
    pubkey = sub.add_parser("pubkey", help="print the PEM public key of a KMS key")
    pubkey.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the PEM here instead of standard output")
    add_kms(pubkey)


def _add_pyinstaller_command(sub: Any) -> None:
    from kmssign.frontends.cli import pyinstaller_command

    pyinstaller_command.add_parser(sub)


def _add_digest_command(sub: Any) -> None:
    from kmssign.frontends.cli import twostep_command

    twostep_command.add_digest_parser(sub)


def _add_sign_digests_command(sub: Any) -> None:
    from kmssign.frontends.cli import twostep_command

    twostep_command.add_sign_digests_parser(sub)


def _add_attach_command(sub: Any) -> None:
    from kmssign.frontends.cli import twostep_command

    twostep_command.add_attach_parser(sub)


def _add_sandbox_command(sub: Any) -> None:
    from kmssign.frontends.cli import sandbox_command

    sandbox_command.add_parser(sub)


SUBCOMMANDS: dict[str, Callable[[Any], None]] = {
    "sign": _add_sign_command,
    "wheel": _add_wheel_command,
    "verify": _add_verify_command,
    "timestamp": _add_timestamp_command,
    "csr": _add_csr_command,
    "pubkey": _add_pubkey_command,
    "pyinstaller": _add_pyinstaller_command,
    "digest": _add_digest_command,
    "sign-digests": _add_sign_digests_command,
    "attach": _add_attach_command,
    "sandbox": _add_sandbox_command,
}
"""Each subcommand -> what adds its parser, in the order ``kmssign --help`` lists them."""
