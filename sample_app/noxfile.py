"""sample-app's release check, as docs/how-to/verify-release.md shows it.

Build first (the wheel into dist/, e.g. ``python -m build --wheel``; a PyInstaller app into
dist/ with ``pyinstaller sample_app.spec``), then ``nox -s verify_signatures``.
"""

from __future__ import annotations

import nox


@nox.session
def verify_signatures(session: nox.Session) -> None:
    """Every Windows binary in dist/ (wheels and PyInstaller output) is signed,
    timestamped and chains to our root."""
    session.install("kmssign")
    session.run(
        "kmssign", "verify", "--ca", "signing/root.pem", "--require-timestamp",
        "--require-signed", "dist/",
    )
