"""CMS (RFC 5652) under Authenticode and RFC 3161 timestamps alike: SignedData and
SignerInfo read from the bytes found, signed attributes, the signer's certificate, the
signature check, the digest algorithms and the parse errors, each defined once here."""
