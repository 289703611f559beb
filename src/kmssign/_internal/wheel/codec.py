"""Raw deflate for member data: ISA-L's (the optional ``isal`` package, installed with
``kmssign[fast]``) when it is there, zlib's otherwise.

ISA-L inflates about four times and deflates (at its default level) over ten times as
fast as zlib at its default level, which is what makes a large wheel's checks and the
signed members' compression cost little beside the signing. Without it, signed members
are deflated at zlib's level 1, not the level 6 zipfile and most wheel builders use:
on machine code (libcrypto, shell32.dll) level 1 runs three times as fast (70 MB/s
against 22 MB/s on this machine) for output about 8% larger, a smaller growth than
ISA-L's default level gives (about 13%). Only signed members are compressed again;
every other member keeps its bytes.
"""

from __future__ import annotations

import zlib
from typing import Any, cast

_isal: Any
try:
    from isal import isal_zlib as _isal
except ImportError:  # the pure path: same bytes in, valid deflate out
    _isal = None

ZLIB_LEVEL = 1
SYNC_FLUSH: int = (_isal or zlib).Z_SYNC_FLUSH
ERRORS: tuple[type[Exception], ...] = (
    (zlib.error, cast("type[Exception]", _isal.error)) if _isal is not None else (zlib.error,)
)


def inflater() -> Any:
    """A raw-deflate decompressor with zlib's interface (``decompress(data, max_length)``,
    ``unconsumed_tail``, ``flush``, ``eof``, ``unused_data``)."""
    return (_isal or zlib).decompressobj(-15)


def deflater() -> Any:
    """A raw-deflate compressor with zlib's interface (``compress``, ``flush``).

    ``flush(SYNC_FLUSH)`` ends its output on a byte boundary without a final block, so
    that another deflater's output may follow it in the same member's data (each one
    starts with no history): how a signed member's unchanged middle, deflated while
    the wheel was being checked, is joined to its new head and tail."""
    if _isal is not None:
        return _isal.compressobj(_isal.ISAL_DEFAULT_COMPRESSION, _isal.DEFLATED, -15)
    return zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, -15)
