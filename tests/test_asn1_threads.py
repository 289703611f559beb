"""asn1crypto builds an OID class's name -> OID map on first use, unguarded: threads that
sign their first files at once (a batch, a wheel's members) must find it built."""

from __future__ import annotations

import subprocess
import sys

RACE = """
import sys, threading
sys.setswitchinterval(1e-6)  # hand the GIL over as often as the interpreter can
from asn1crypto import algos, cms
from kmssign._internal.authenticode import build

classes = (cms.ContentType, cms.CMSAttributeType, algos.DigestAlgorithmId,
           algos.SignedDigestAlgorithmId)
assert all(cls._reverse_map for cls in classes), "a map is left to be built on first use"
barrier = threading.Barrier(8)
errors = []

def first_signature():
    barrier.wait()
    try:
        content = build.indirect_data_der("sha256", bytes(32))
        build.signed_attributes_der(content, "sha256", description="x", url="https://x")
        build._signature_algorithm_der("rsa", "sha256")
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=first_signature) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert not errors, errors
"""


def test_threads_building_their_first_signed_attributes_at_once_all_succeed() -> None:
    # A fresh interpreter: in this one, other tests used the classes already.
    proc = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
