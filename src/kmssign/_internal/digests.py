"""The digest algorithms kmssign knows, by name, defined once: what signers hash with and
what CMS signatures are checked with (sha1 only ever read, in old signatures and tokens;
kmssign signs with the SHA-2 family, :data:`kmssign.signers.DIGESTS`)."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
