"""The CLI's commands: turn parsed arguments into Settings and library calls."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from kmssign import api
from kmssign.config import Settings, load_settings
from kmssign.errors import ConfigError
from kmssign.frontends.cli.exits import EXIT_FAILED, EXIT_OK
from kmssign.frontends.cli.output import Printer


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    given = {k: v for k, v in overrides.items() if v is not None}
    return load_settings(config=getattr(args, "config", None), overrides=given,
                         override_names=getattr(args, "flags_given", None))


def _urls(values: list[str] | None) -> tuple[str, ...] | None:
    """Repeated flags, each possibly a comma-separated list (as the setting's text is)."""
    if not values:
        return None
    return tuple(u.strip() for v in values for u in v.split(",") if u.strip())


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


def _finish(
    printer: Printer, report: api.Report, args: argparse.Namespace, verb: str,
    what: str = "PE file or MSI package",
) -> int:
    if not report.results and not args.allow_empty:  # a wrong path must not pass in CI
        printer.finish(report, f"nothing to {verb}: no {what} found in "
                       f"{', '.join(map(str, args.paths))} (--allow-empty accepts that)")
        return EXIT_FAILED
    printer.finish(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _sign_settings(args: argparse.Namespace) -> Settings:
    timestamp = "off" if args.no_timestamp else args.timestamp
    return _settings(
        args,
        key_file=args.key_file,
        signer=args.signer,
        pkcs11_module=args.pkcs11_module,
        pkcs11_token=args.pkcs11_token,
        pkcs11_key=args.pkcs11_key,
        pkcs11_pin_file=args.pkcs11_pin_file,
        certificate=args.certificate,
        chain=tuple(args.chain) if args.chain else None,
        digest=args.digest,
        description=args.description,
        url=args.url,
        skip_signed=args.skip_signed,
        include=tuple(args.include) if args.include else None,
        exclude=tuple(args.exclude) if args.exclude else None,
        timestamp_urls=_urls(args.timestamp_urls),
        timestamp=timestamp,
        timestamp_timeout=args.timestamp_timeout,
        jobs=args.jobs,
        **_kms_overrides(args),
    )


def cmd_sign(args: argparse.Namespace) -> int:
    settings = _sign_settings(args)
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
    return _finish(printer, report, args, "sign")


def cmd_wheel(args: argparse.Namespace) -> int:
    settings = _sign_settings(args)
    printer = _printer(args)
    report = api.sign_wheels(
        args.paths,
        settings,
        dest_dir=args.dest_dir,
        dry_run=args.dry_run,
        on_start=printer.start,
        on_result=printer.result,
        log=printer.log,
    )
    return _finish(printer, report, args, "sign", "wheel")


def cmd_verify(args: argparse.Namespace) -> int:
    if args.no_chain and (args.ca or args.tsa_ca):
        raise ConfigError("--no-chain checks no chain: leave out --ca and --tsa-ca, or it")
    printer = _printer(args)
    report = api.verify_files(
        args.paths,
        Settings(
            include=tuple(args.include or ()), exclude=tuple(args.exclude or ()),
            **({"jobs": args.jobs} if args.jobs else {}),
        ),
        roots=() if args.no_chain else args.ca,
        tsa_roots=() if args.no_chain else (args.tsa_ca or ()),
        require_timestamp=args.require_timestamp,
        allow_unsigned=args.allow_unsigned and not args.require_signed,
        on_start=printer.start,
        on_result=printer.result,
        log=printer.log,
    )
    return _finish(printer, report, args, "verify")


def cmd_timestamp(args: argparse.Namespace) -> int:
    settings = _settings(
        args,
        timestamp_urls=_urls(args.timestamp_urls),
        timestamp_timeout=args.timestamp_timeout,
        jobs=args.jobs,
    )
    printer = _printer(args)
    report = api.timestamp_files(
        args.paths, settings, on_start=printer.start, on_result=printer.result, log=printer.log
    )
    return _finish(printer, report, args, "timestamp")


def _kms_signer(args: argparse.Namespace) -> Any:
    settings = _settings(args, **_kms_overrides(args))
    if not settings.key_id:
        raise ConfigError("--key-id is required (or key-id in [tool.kmssign])")
    return api.create_signer(settings)


def cmd_csr(args: argparse.Namespace) -> int:
    subject = api.parse_subject(args.subject)
    signer = _kms_signer(args)
    pem = api.build_csr(signer, subject, signer.digest_for(args.digest or "sha256"))
    _write(args.output, pem)
    print(f"kmssign: wrote certificate request for {signer.name} to {args.output}")
    return EXIT_OK


def cmd_pubkey(args: argparse.Namespace) -> int:
    pem = api.public_key_pem(_kms_signer(args))
    if args.output:
        _write(args.output, pem)
    else:
        sys.stdout.write(pem.decode())
    return EXIT_OK


def _write(path: Path, data: bytes) -> None:
    with api.atomic_output(path) as out:
        out.write(data)


COMMANDS = {
    "sign": cmd_sign,
    "wheel": cmd_wheel,
    "verify": cmd_verify,
    "timestamp": cmd_timestamp,
    "csr": cmd_csr,
    "pubkey": cmd_pubkey,
}
# The commands in modules of their own, imported only when one of them runs.
ELSEWHERE = {
    "digest": ("twostep_command", "cmd_digest"),
    "sign-digests": ("twostep_command", "cmd_sign_digests"),
    "attach": ("twostep_command", "cmd_attach"),
    "pyinstaller": ("pyinstaller_command", "run"),  # PyInstaller itself is imported in run()
    "sandbox": ("sandbox_command", "run"),  # moto is imported only when it starts
}


def run(args: argparse.Namespace) -> int:
    if args.command in ELSEWHERE:
        module, function = ELSEWHERE[args.command]
        command = getattr(importlib.import_module(f"kmssign.frontends.cli.{module}"), function)
        return int(command(args))
    return COMMANDS[args.command](args)
