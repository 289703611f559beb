"""MSI packages built by another writer than kmssign's: wixl (Debian ``wixl``) from WiX
source, and msitools' ``msiinfo`` (Debian ``msitools``) to read their tables back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WIXL = shutil.which("wixl")
MSIINFO = shutil.which("msiinfo")


def build_msi(directory: Path, files: dict[str, bytes], name: str = "Demo") -> Path:
    """An MSI installing ``files`` (name -> content), their cabinet embedded: the files
    are written to ``directory`` and packaged there (by :func:`tests.support.msiutil.build_msi`)."""
    from tests.support import msiutil  # it builds on this module's WIXL and msiinfo

    directory.mkdir(parents=True, exist_ok=True)
    for file_name, content in files.items():
        (directory / file_name).write_bytes(content)
    return msiutil.build_msi(
        directory / f"{name}.msi", {file_name: directory / file_name for file_name in files}, name
    )


def msiinfo(*args: str) -> str:
    """``msiinfo`` run with ``args``; its output (it must succeed)."""
    assert MSIINFO, "msiinfo is required (apt-get install msitools)"
    result = subprocess.run([MSIINFO, *args], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode("utf-8", errors="replace")


def tables_and_rows(msi: Path) -> dict[str, str]:
    """Every table of ``msi`` as ``msiinfo export`` prints it."""
    return {
        table: msiinfo("export", str(msi), table) for table in msiinfo("tables", str(msi)).split()
    }
