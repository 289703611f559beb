"""The default time limits of the network services, defined once (``Settings`` and the
clients both start from these)."""

TIMESTAMP_TIMEOUT = 10.0  # seconds for one timestamp request, all of it
KMS_TIMEOUT = 60.0  # seconds for one KMS call, retries included
