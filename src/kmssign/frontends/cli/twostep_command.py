"""``kmssign digest``, ``sign-digests`` and ``attach``: signing in two steps.

One set of settings (``KMSSIGN_*``, ``[tool.kmssign]``) serves all three steps; each
step has the flags of what it uses: ``digest`` the certificate and signature settings,
``sign-digests`` the key, ``attach`` the timestamp settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kmssign.frontends.cli.parsing import Store

# what commands._sign_settings reads; a step without the flag leaves the setting alone
_SETTINGS_DESTS = (
    "key_file", "signer", "pkcs11_module", "pkcs11_token", "pkcs11_key", "pkcs11_pin_file",
    "certificate", "chain", "digest", "description", "url", "skip_signed", "include",
    "exclude", "timestamp_urls", "timestamp", "no_timestamp", "timestamp_timeout", "jobs",
    "key_id", "region", "profile", "endpoint_url", "kms_timeout", "config",
)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PYPROJECT", type=Path,
                   help="pyproject.toml to read [tool.kmssign] from (default: nearest one)")


def _add_common(p: argparse.ArgumentParser) -> None:
    """The output flags, and every setting the step has no flag for left alone."""
    from kmssign.frontends.cli import arguments as a

    a.add_output(p)
    have = {a.dest for a in p._actions}
    p.set_defaults(**{dest: None for dest in _SETTINGS_DESTS if dest not in have})


def add_digest_parser(sub: Any) -> None:
    from kmssign.frontends.cli import arguments as a

    digest = sub.add_parser(
        "digest", help="two-step signing, 1: write what each file needs signed (no key needed)"
    )
    digest.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    digest.add_argument("-o", "--output", type=Path, required=True, metavar="REQUESTS.json",
                        help="where to write the signing requests (JSON)")
    c = digest.add_argument_group("certificate")
    c.add_argument("--certificate", "--cert", dest="certificate", action=Store, type=Path,
                   metavar="CERT", help="signing certificate (leaf first), PEM, DER or .p7b")
    c.add_argument("--chain", type=Path, action="append", metavar="PEM",
                   help="intermediate certificates (repeatable)")
    c.add_argument("--digest", choices=("sha256", "sha384", "sha512"), help="default sha256")
    a.add_signature(digest, append=False)
    _add_config(digest)
    a.add_allow_empty(digest, "digest")
    _add_common(digest)


def add_sign_digests_parser(sub: Any) -> None:
    from kmssign.frontends.cli import arguments as a

    sign = sub.add_parser(
        "sign-digests", help="two-step signing, 2: sign the requests with kmssign's signers"
    )
    sign.add_argument("requests", type=Path, metavar="REQUESTS.json",
                      help="the requests kmssign digest wrote")
    sign.add_argument("-o", "--output", type=Path, required=True, metavar="SIGNATURES.json",
                      help="where to write the signatures (JSON)")
    a.add_key(sign)
    _add_common(sign)


def add_attach_parser(sub: Any) -> None:
    from kmssign.frontends.cli import arguments as a

    attach = sub.add_parser(
        "attach", help="two-step signing, 3: check the signatures, embed and timestamp them"
    )
    attach.add_argument("requests", type=Path, metavar="REQUESTS.json",
                        help="the requests kmssign digest wrote")
    attach.add_argument("signatures", type=Path, metavar="SIGNATURES.json",
                        help="the signatures for them (kmssign sign-digests, or another tool)")
    a.add_timestamp(attach)
    _add_config(attach)
    _add_common(attach)


def cmd_digest(args: argparse.Namespace) -> int:
    from kmssign import api
    from kmssign.frontends.cli.commands import _finish, _printer, _sign_settings

    printer = _printer(args)
    report = api.digest_files(
        args.paths, _sign_settings(args), output=args.output,
        on_start=printer.start, on_result=printer.result, log=printer.log,
    )
    code = _finish(printer, report, args, "digest")
    if report.ok and not args.quiet and not args.json:
        print(f"kmssign: wrote {report.count('would-sign')} signing requests to {args.output}")
    return code


def cmd_sign_digests(args: argparse.Namespace) -> int:
    from kmssign import api
    from kmssign.frontends.cli.commands import _printer, _sign_settings

    printer = _printer(args)
    count = api.sign_digests(args.requests, _sign_settings(args), output=args.output,
                             log=printer.log)
    if not args.quiet:
        print(f"kmssign: wrote {count} signatures to {args.output}", file=sys.stdout)
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from kmssign import api
    from kmssign.frontends.cli.commands import _printer, _sign_settings

    printer = _printer(args)
    report = api.attach_signatures(
        args.requests, args.signatures, _sign_settings(args),
        on_start=printer.start, on_result=printer.result, log=printer.log,
    )
    printer.finish(report)
    return 0 if report.ok else 1
