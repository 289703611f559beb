"""KMS fixtures (moto)."""
