"""Compound files ([MS-CFB], "OLE2": MSI, MSM and MSP packages): the header and sector
numbers (``layout``), directory entries, names and the red-black tree (``directory``), a
strict reader that accounts for every sector (``reader``), and a writer that lays a file
out anew with root-level streams added, replaced or removed (``writer``).

Nothing here knows MSI or signatures: the engine decides which streams to write.
"""
