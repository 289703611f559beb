"""Windows Installer packages (MSI, MSM, MSP) as signable files: found by the root
entry's class id, digested as Windows digests them, signed in the root-level
``\\x05DigitalSignature`` stream (``package``). The compound file itself is ``cfb/``'s."""
