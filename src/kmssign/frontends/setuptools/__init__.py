"""The setuptools plugin: ``plugin`` (the ``setuptools.finalize_distribution_options`` entry
point, which does nothing without ``[tool.kmssign.setuptools]``) and ``command`` (the
``bdist_wheel`` that signs the wheel it wrote; the only module importing setuptools)."""
