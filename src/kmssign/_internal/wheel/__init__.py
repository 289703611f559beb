"""Wheels (zip archives) as containers of PE files: reading the central directory and the
local headers, ZIP64 included (``zipdir``); raw deflate (``codec``); a member's bytes in
and out (``streams``); ``RECORD`` (``record``); writing the new archive around replaced
members (``rewrite``).

Nothing here signs: the engine extracts the PE members, signs them as loose files and
hands the results back to ``rewrite``.
"""
