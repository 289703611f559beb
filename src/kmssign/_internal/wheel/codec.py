"""Raw deflate for member data: ISA-L's (the optional ``isal`` package, installed with
``kmssign[fast]``) when it is there, zlib's otherwise.

ISA-L inflates about four times and deflates (at its default level) over ten times as
fast as zlib at its default level, which is what makes a large wheel's checks and the
signed members' compression cost little beside the signing. Its output is a little
larger (a few percent on machine code); zlib's level 6 is what zipfile, and so most
wheel builders, use.
"""

from __future__ import annotations

import zlib
from typing import Any, cast

_isal: Any
try:
    from isal import isal_zlib as _isal
except ImportError:  # the pure path: same bytes in, valid deflate out
    _isal = None

ZLIB_LEVEL = 6
ERRORS: tuple[type[Exception], ...] = (
    (zlib.error, cast("type[Exception]", _isal.error)) if _isal is not None else (zlib.error,)
)


def inflater() -> Any:
    """A raw-deflate decompressor with zlib's interface (``decompress(data, max_length)``,
    ``unconsumed_tail``, ``flush``, ``eof``, ``unused_data``)."""
    return (_isal or zlib).decompressobj(-15)


def deflater() -> Any:
    """A raw-deflate compressor with zlib's interface (``compress``, ``flush``)."""
    if _isal is not None:
        return _isal.compressobj(_isal.ISAL_DEFAULT_COMPRESSION, _isal.DEFLATED, -15)
    return zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, -15)
