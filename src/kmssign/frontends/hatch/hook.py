"""The ``kmssign`` Hatch build hook: every Windows binary a build ships comes out signed.

Enable it with ``[tool.hatch.build.hooks.kmssign]`` (or a per-target table). Everything
happens in ``finalize``, once the artifact is written, through ``BuildHookInterface``
alone: the wheel target's wheel is signed in place (every PE member, ``.data/`` included,
RECORD rewritten); other targets except sdist have their produced executables signed in
place. Editable wheels and sdists are left alone. This is the only module that imports
hatchling, and only its hook interface and ``hookimpl``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.plugin import hookimpl

from kmssign.config import Settings, disabled
from kmssign.errors import KmsSignError
from kmssign.frontends import buildhooks
from kmssign.frontends.hatch import work


class KmsSignBuildHook(BuildHookInterface[Any]):
    PLUGIN_NAME = "kmssign"

    def _settings(self) -> Settings | None:
        if disabled(os.environ):
            self.app.display_info(buildhooks.DISABLED_NOTE)
            return None
        root = Path(self.root)
        name = work.hook_table_name(root, self.target_name)
        return work.hook_settings(root, self.config, name, os.environ)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self.target_name == "sdist" or version == "editable":
            return
        artifact = Path(artifact_path)
        try:
            settings = self._settings()
            if settings is None:
                return
            if self.target_name == "wheel":
                root = Path(self.root)
                found = buildhooks.sign_built_wheel(
                    artifact, settings, self.app.display_info, project=root
                )
                hint = work.excluded_binaries_hint(root) if not found else None
                if hint is not None:
                    self.app.display_info(hint)
            else:
                work.sign_artifact(artifact, settings, self.app.display_info)
        except KmsSignError as exc:
            if self.target_name == "wheel":  # no unsigned wheel is left where one is expected
                artifact.unlink(missing_ok=True)
            self.app.abort(f"kmssign: error: {exc}")


@hookimpl
def hatch_register_build_hook() -> type[KmsSignBuildHook]:
    return KmsSignBuildHook
