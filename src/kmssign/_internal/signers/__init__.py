"""The signers kmssign ships (key file, AWS KMS); the protocol is :mod:`kmssign.signers`."""
