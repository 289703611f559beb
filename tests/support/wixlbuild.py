"""MSI packages built by another writer than kmssign's: wixl (Debian ``wixl``) from WiX
source, and msitools' ``msiinfo`` (Debian ``msitools``) to read their tables back."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

WIXL = shutil.which("wixl")
MSIINFO = shutil.which("msiinfo")

_WXS = """<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="{name}" Language="1033" Version="1.2.3" Manufacturer="kmssign tests"
           UpgradeCode="{upgrade}">
    <Package InstallerVersion="200" Compressed="yes" InstallScope="perMachine"/>
    <Media Id="1" Cabinet="payload.cab" EmbedCab="yes"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFilesFolder">
        <Directory Id="INSTALLDIR" Name="{name}">
{components}
        </Directory>
      </Directory>
    </Directory>
    <Feature Id="Main" Level="1">
{refs}
    </Feature>
  </Product>
</Wix>
"""


def build_msi(directory: Path, files: dict[str, bytes], name: str = "Demo") -> Path:
    """An MSI installing ``files`` (name -> content), their cabinet embedded."""
    assert WIXL, "wixl is required (apt-get install wixl)"
    directory.mkdir(parents=True, exist_ok=True)
    components, refs = [], []
    for i, (file_name, content) in enumerate(sorted(files.items())):
        (directory / file_name).write_bytes(content)
        guid = uuid.uuid5(uuid.NAMESPACE_URL, f"kmssign-test/{name}/{file_name}")
        components.append(
            f'          <Component Id="C{i}" Guid="{guid}">'
            f'<File Id="F{i}" Source="{file_name}"/></Component>')
        refs.append(f'      <ComponentRef Id="C{i}"/>')
    wxs = directory / f"{name}.wxs"
    wxs.write_text(_WXS.format(
        name=name, upgrade=uuid.uuid5(uuid.NAMESPACE_URL, f"kmssign-test/{name}"),
        components="\n".join(components), refs="\n".join(refs)), encoding="utf-8")
    out = directory / f"{name}.msi"
    subprocess.run([WIXL, "-o", str(out), str(wxs)], cwd=directory, check=True,
                   capture_output=True)
    return out


def msiinfo(*args: str) -> str:
    """``msiinfo`` run with ``args``; its output (it must succeed)."""
    assert MSIINFO, "msiinfo is required (apt-get install msitools)"
    result = subprocess.run([MSIINFO, *args], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode("utf-8", errors="replace")


def tables_and_rows(msi: Path) -> dict[str, str]:
    """Every table of ``msi`` as ``msiinfo export`` prints it."""
    return {table: msiinfo("export", str(msi), table)
            for table in msiinfo("tables", str(msi)).split()}
