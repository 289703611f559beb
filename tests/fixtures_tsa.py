"""TSA fixtures (loopback RFC 3161 server)."""
