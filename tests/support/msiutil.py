"""MSI packages of files on disk (large ones, PE files kmssign signed), built by wixl;
their tables read back by ``msiinfo`` (:mod:`tests.support.wixlbuild` finds both)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

from tests.support.wixlbuild import WIXL, tables_and_rows

_WXS = """<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name={name} Language="1033" Version="1.0.0" Manufacturer="kmssign tests"
           UpgradeCode="{upgrade}">
    <Package InstallerVersion="200" Compressed="yes" InstallScope="perMachine"/>
    <Media Id="1" Cabinet="payload.cab" EmbedCab="yes"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFilesFolder">
        <Directory Id="INSTALLDIR" Name={name}>
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


def wxs(name: str, files: Mapping[str, Path], base: Path) -> str:
    """WiX source of a package installing ``files`` (name in the package -> file here),
    one component each, compressed into an embedded cabinet. wixl wants the sources
    relative to ``base``, where it runs."""
    components, refs = [], []
    for index, (target, source) in enumerate(sorted(files.items())):
        guid = uuid.uuid5(uuid.NAMESPACE_URL, f"kmssign-test/{name}/{target}")
        components.append(
            f'          <Component Id="C{index}" Guid="{guid}">\n'
            f'            <File Id="F{index}" Name={quoteattr(target)} '
            f"Source={quoteattr(os.path.relpath(source, base))}/>\n"
            "          </Component>"
        )
        refs.append(f'      <ComponentRef Id="C{index}"/>')
    upgrade = uuid.uuid5(uuid.NAMESPACE_URL, f"kmssign-test/{name}")
    return _WXS.format(
        name=quoteattr(name), upgrade=upgrade, components="\n".join(components),
        refs="\n".join(refs),
    )


def build_msi(out: Path, files: Mapping[str, Path], name: str = "Demo") -> Path:
    """Build ``out`` with wixl from ``files``; returns ``out``."""
    assert WIXL, "wixl is required (apt-get install wixl)"
    source = out.with_suffix(".wxs")
    source.write_text(wxs(name, files, out.parent), encoding="utf-8")
    subprocess.run(
        [WIXL, "-o", out.name, source.name], cwd=out.parent, check=True, capture_output=True
    )
    return out


def tables(path: Path) -> dict[str, str]:
    """Every table of the package as ``msiinfo export`` prints it (there are some)."""
    found = tables_and_rows(path)
    assert found, f"msiinfo lists no tables in {path}"
    return found
