"""Front ends: thin adapters that turn their world (a command line, a Hatch build, a
PyInstaller spec) into paths and :class:`~kmssign.config.Settings`, then call
:mod:`kmssign.api`. They never import each other.
"""
