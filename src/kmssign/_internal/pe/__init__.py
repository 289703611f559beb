"""The PE format: headers (``image``), the certificate table (``certtable``), and the
streaming passes over a file: reading it in pieces (``reading``), the Authenticode digest
(``digest``), the PE checksum (``checksum``), hashing on worker threads (``hashing``),
the kernel's copy of large files (``kernelcopy``) and the signed copy (``signedcopy``).

Nothing here knows about PKCS#7, keys or the network.
"""
