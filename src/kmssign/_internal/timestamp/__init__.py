"""RFC 3161 timestamps fetched: the client with retries and failover (``client``) and the
HTTP POST with kept-alive connections and proxies (``transport``). Checking a token is
CMS work (:mod:`kmssign._internal.cms.timestamps`), which never touches the network.

Only runs that timestamp import ``client`` (and with it the HTTP stack).
"""
