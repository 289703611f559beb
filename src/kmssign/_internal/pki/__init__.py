"""Certificates: loading the signing certificate and chain, matching them to the key,
validating chains (``certs``); certificate requests and public keys from a signer (``csr``).
"""
