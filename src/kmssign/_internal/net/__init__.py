"""What every network client of a run shares: a total deadline per request
(``deadline``) and a circuit breaker that stops asking a service that failed for good
(``breaker``). Used by the KMS signer and the timestamp client; no network code here.
"""
