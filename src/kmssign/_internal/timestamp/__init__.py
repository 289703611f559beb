"""RFC 3161 timestamps: the client with retries and failover (``client``), the HTTP POST
with kept-alive connections and proxies (``transport``), and the checks of a token and of
a legacy Authenticode countersignature (``tokens``, which never touches the network).

Only runs that timestamp import ``client`` (and with it the HTTP stack).
"""
