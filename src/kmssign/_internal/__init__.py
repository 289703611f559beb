"""kmssign's internals: everything below here may change in any release.

The public names live in :mod:`kmssign`, :mod:`kmssign.api`, :mod:`kmssign.config`,
:mod:`kmssign.errors`, :mod:`kmssign.signers` and :mod:`kmssign.pyinstaller`.
"""
