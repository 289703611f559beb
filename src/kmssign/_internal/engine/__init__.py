"""Running a batch of files: finding them (``discovery``), one run's signing session and
one file's signing (``signing``), the two-stage worker pipeline (``pipeline``), atomic
replacement of files (``atomic``) and the per-file report (``report``).

:mod:`kmssign.api` is the public face of this package.
"""
