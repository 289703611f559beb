"""Authenticode: the ASN.1 of it (``asn1``), building a signature for a file digest
(``build``), reading one found in a file (``parse``) and verifying a file's signatures,
chains and timestamps (``verify``).

``asn1``, ``build`` and ``parse`` are pure: no files, no network.
"""
