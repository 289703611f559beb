"""A local stand-in for the services a release uses: a KMS holding a key, a throwaway CA
that issues the code-signing certificate from ``kmssign csr``'s request, and an RFC 3161
timestamp server, all on 127.0.0.1 (``kmssign sandbox``)."""
