"""The CLI's commands: turn parsed arguments into Settings and library calls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kmssign import api
from kmssign.config import Settings, load_settings
from kmssign.errors import ConfigError
from kmssign.frontends.cli import pyinstaller_command
from kmssign.frontends.cli.output import Printer

EXIT_OK, EXIT_FAILED = 0, 1


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    given = {k: v for k, v in overrides.items() if v is not None}
    return load_settings(config=getattr(args, "config", None), overrides=given)


def _kms_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "key_id": args.key_id,
        "region": args.region,
        "profile": args.profile,
        "endpoint_url": args.endpoint_url,
        "kms_timeout": args.kms_timeout,
    }


def _printer(args: argparse.Namespace) -> Printer:
    return Printer(quiet=args.quiet, json_mode=args.json)


def _finish(printer: Printer, report: api.Report) -> int:
    printer.finish(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_sign(args: argparse.Namespace) -> int:
    timestamp = "off" if args.no_timestamp else args.timestamp
    settings = _settings(
        args,
        key_file=args.key_file,
        certificate=args.cert,
        chain=tuple(args.chain) if args.chain else None,
        digest=args.digest,
        description=args.description,
        url=args.url,
        skip_signed=args.skip_signed,
        include=tuple(args.include) if args.include else None,
        exclude=tuple(args.exclude) if args.exclude else None,
        timestamp_urls=tuple(args.timestamp_url) if args.timestamp_url else None,
        timestamp=timestamp,
        timestamp_timeout=args.timestamp_timeout,
        jobs=args.jobs,
        **_kms_overrides(args),
    )
    printer = _printer(args)
    report = api.sign_files(
        args.paths,
        settings,
        append=args.append,
        output=args.output,
        dry_run=args.dry_run,
        record_hashes=args.json,
        on_start=printer.start,
        on_result=printer.result,
        log=printer.log,
    )
    return _finish(printer, report)


def cmd_verify(args: argparse.Namespace) -> int:
    printer = _printer(args)
    report = api.verify_files(
        args.paths,
        roots=args.ca or (),
        tsa_roots=args.tsa_ca or (),
        require_timestamp=args.require_timestamp,
        jobs=args.jobs or 4,
        on_start=printer.start,
        on_result=printer.result,
        log=printer.log,
    )
    return _finish(printer, report)


def cmd_timestamp(args: argparse.Namespace) -> int:
    settings = _settings(
        args,
        timestamp_urls=tuple(args.timestamp_url) if args.timestamp_url else None,
        timestamp_timeout=args.timestamp_timeout,
        jobs=args.jobs,
    )
    printer = _printer(args)
    report = api.timestamp_files(
        args.paths, settings, on_start=printer.start, on_result=printer.result, log=printer.log
    )
    return _finish(printer, report)


def _kms_signer(args: argparse.Namespace) -> Any:
    settings = _settings(args, **_kms_overrides(args))
    if not settings.key_id:
        raise ConfigError("--key-id is required (or key-id in [tool.kmssign])")
    from kmssign.signers.aws_kms import KmsSigner

    return KmsSigner.create(
        settings.key_id,
        region=settings.region,
        profile=settings.profile,
        endpoint_url=settings.endpoint_url,
        timeout=settings.kms_timeout,
    )


def cmd_csr(args: argparse.Namespace) -> int:
    from kmssign.pki.csr import build_csr, parse_subject

    subject = parse_subject(args.subject)
    signer = _kms_signer(args)
    pem = build_csr(signer, subject, signer.digest_for(args.digest or "sha256"))
    _write(args.output, pem)
    print(f"kmssign: wrote certificate request for {signer.name} to {args.output}")
    return EXIT_OK


def cmd_pubkey(args: argparse.Namespace) -> int:
    from kmssign.pki.csr import public_key_pem

    pem = public_key_pem(_kms_signer(args))
    if args.output:
        _write(args.output, pem)
    else:
        sys.stdout.write(pem.decode())
    return EXIT_OK


def _write(path: Path, data: bytes) -> None:
    from kmssign.engine.atomic import atomic_output

    with atomic_output(path) as out:
        out.write(data)


COMMANDS = {
    "sign": cmd_sign,
    "verify": cmd_verify,
    "timestamp": cmd_timestamp,
    "csr": cmd_csr,
    "pubkey": cmd_pubkey,
    "pyinstaller": pyinstaller_command.run,  # PyInstaller itself is imported in run()
}


def run(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
