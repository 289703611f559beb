"""The ``kmssign`` Hatch build hook: every Windows binary a build ships comes out signed.

Enable it with ``[tool.hatch.build.hooks.kmssign]`` (or a per-target table). Wheels:
the PE files the wheel will contain (project files, force-included files and artifacts
of earlier hooks) are signed as copies outside the project root and mapped at the same
wheel paths. Other targets except sdist: produced executables are signed in place.
This is the only module that imports hatchling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.plugin import hookimpl

from kmssign.api import FileResult
from kmssign.config import Settings
from kmssign.errors import KmsSignError
from kmssign.frontends.hatch import work as hf


class KmsSignBuildHook(BuildHookInterface[BuilderConfig]):
    PLUGIN_NAME = "kmssign"

    _staging: hf.Staging | None = None
    _popped: dict[str, str] | None = None

    def _settings(self) -> Settings | None:
        if hf.disabled(os.environ):
            self.app.display_info(f"kmssign: {hf.DISABLE_VARIABLE} is set; not signing")
            return None
        hooks = self.build_config.target_config.get("hooks", {})
        where = f"targets.{self.target_name}." if "kmssign" in hooks else ""
        name = f"tool.hatch.build.{where}hooks.kmssign"
        return hf.hook_settings(Path(self.root), self.config, name, os.environ)

    def _fail(self, exc: KmsSignError) -> None:
        self._cleanup()
        self.app.abort(f"kmssign: error: {exc}")

    def _report(self, named: list[tuple[str, FileResult]]) -> None:
        for name, result in named:
            self.app.display_info(hf.describe(result, name))
        failed = [(n, r) for n, r in named if r.status == "failed"]
        if failed:
            raise hf.failure_error(failed)
        signed = sum(1 for _, r in named if r.status == "signed")
        self.app.display_info(f"kmssign: {signed} signed, {len(named) - signed} skipped")

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version != "standard":
            return
        try:
            settings = self._settings()
            if settings is None:
                return
            with self.build_config.set_build_data(build_data):
                included = list(self.build_config.builder.recurse_included_files())
            members = hf.pe_members(
                (
                    hf.Member(Path(f.path), f.distribution_path.replace(os.sep, "/"))
                    for f in included
                ),
                settings,
            )
            if not members:
                self.app.display_info("kmssign: no Windows binaries in the wheel")
                return
            self._staging = hf.Staging(Path(self.root))
            signed, _ = hf.sign_members(members, settings, self._staging, self.app.display_info)
            self._report([(s.member.wheel_path, s.result) for s in signed])
            done = [s for s in signed if s.result.status == "signed"]
            sources = [s.member.source for s in done]
            root, config = Path(self.root), self.build_config
            force_include = build_data["force_include"]
            removed = hf.replace_forced_files(force_include, root, sources)
            self._popped = hf.replace_forced_files(config.force_include, root, sources)
            for relative in hf.reserved_relatives({**removed, **self._popped}, root):
                config.build_reserved_paths.add(config.get_distribution_path(relative))
            for s in done:
                force_include[str(s.copy)] = s.member.wheel_path
        except KmsSignError as exc:
            self._fail(exc)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._cleanup()
        if self.target_name in ("wheel", "sdist"):
            return
        try:
            settings = self._settings()
            if settings is None:
                return
            artifact = Path(artifact_path)
            report = hf.sign_artifact(artifact, settings, self.app.display_info)
            if report is None:
                self.app.display_info(f"kmssign: {artifact.name} is not a Windows binary")
                return
            if not report.results:
                self.app.display_info(f"kmssign: no Windows binaries in {artifact.name}")
                return
            base = artifact.parent if artifact.is_file() else artifact
            self._report([(r.path.relative_to(base).as_posix(), r) for r in report.results])
        except KmsSignError as exc:
            self._fail(exc)

    def _cleanup(self) -> None:
        if self._popped:  # config force-include entries lent to this build
            self.build_config.force_include.update(self._popped)
            self._popped = None
        if self._staging is not None:
            self._staging.cleanup()
            self._staging = None


@hookimpl
def hatch_register_build_hook() -> type[KmsSignBuildHook]:
    return KmsSignBuildHook
