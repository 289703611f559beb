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


LATER_NAMES = """
from kmssign._internal.authenticode import asn1  # builds the maps
from asn1crypto import cms, tsp  # tsp adds its names to two of those maps

assert cms.ContentType("tst_info").dotted == "1.2.840.113549.1.9.16.1.4"
assert cms.CMSAttributeType("signing_certificate_v2").dotted == "1.2.840.113549.1.9.16.2.47"
assert cms.ContentType("spc_indirect_data").dotted == "1.3.6.1.4.1.311.2.1.4"
"""


def test_names_that_asn1crypto_tsp_adds_are_in_the_maps_built_early() -> None:
    """Building the maps at import must not leave out the names asn1crypto's own tsp
    module adds when it is imported (the sandbox's timestamp server builds tokens by
    those names: built before them, its every reply failed)."""
    proc = subprocess.run([sys.executable, "-c", LATER_NAMES], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
