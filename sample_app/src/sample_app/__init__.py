"""sample-app: a tiny CLI whose wheel ships signed Windows helpers (see README.md)."""

__version__ = "1.0.0"
