"""sample-app's own build hook: produce the Windows helpers the wheel ships.

It runs BEFORE kmssign's hook (it is listed first in pyproject.toml), so the binaries it
produces are signed with everything else. They are built into a temporary directory and
handed to the wheel with ``force_include``; nothing is written into the source tree.

With mingw-w64 (``x86_64-w64-mingw32-gcc``) it compiles native/greet.c into greet.dll
and native/hello.c into hello.exe (which uses greet.dll). Without it, it ships a copy of
pip's vendored Windows launcher as hello.exe, so the build still has a binary to sign.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

WHEEL_DIR = "sample_app/bin"


def _pip_launcher() -> Path:
    """pip's vendored 64-bit launcher, from this environment or the base interpreter."""
    candidates = []
    try:
        import pip

        candidates.append(Path(pip.__file__).parent)
    except ImportError:  # isolated build environments may come without pip
        pass
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    candidates.append(Path(base["purelib"]) / "pip")
    for pip_dir in candidates:
        launcher = pip_dir / "_vendor" / "distlib" / "t64.exe"
        if launcher.is_file():
            return launcher
    raise RuntimeError("neither x86_64-w64-mingw32-gcc nor pip's t64.exe launcher was found")


class NativeHelpersHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version != "standard":
            return
        self._out = Path(tempfile.mkdtemp(prefix="sample-app-native-"))
        native = Path(self.root) / "native"
        gcc = shutil.which("x86_64-w64-mingw32-gcc")
        if gcc:
            dll, exe = self._out / "greet.dll", self._out / "hello.exe"
            subprocess.run([gcc, "-O2", "-s", "-shared", "-o", str(dll),
                            str(native / "greet.c")], check=True)
            subprocess.run([gcc, "-O2", "-s", "-o", str(exe), str(native / "hello.c"),
                            str(dll)], check=True)
            self.app.display_info("sample-app: compiled hello.exe and greet.dll with mingw-w64")
        else:
            shutil.copyfile(_pip_launcher(), self._out / "hello.exe")
            self.app.display_info("sample-app: no mingw-w64; shipping pip's launcher as hello.exe")
        for binary in sorted(self._out.iterdir()):
            build_data["force_include"][str(binary)] = f"{WHEEL_DIR}/{binary.name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        out = getattr(self, "_out", None)
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
