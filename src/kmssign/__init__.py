"""kmssign: Authenticode signing of Windows PE files with keys held in AWS KMS."""

__version__ = "0.1.0"
