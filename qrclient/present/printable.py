"""Text from a peer (or any file) made safe to show on a terminal.

A PACS chooses its error comments, implementation version name, UIDs and every value
in its matches. Written raw, an ESC or CSI in them is a terminal escape sequence:
it can recolour or clear the screen, retitle the window, fake output or, on some
terminals, answer back as if typed. Every face shows such text through ``printable``:
control characters (C0, DEL, C1), line and paragraph separators and bidirectional
overrides become visible escapes; everything else, non-Latin text included, is left.
"""

from __future__ import annotations

import re

# What JSON leaves raw (it escapes C0 in strings itself), and then C0 as well.
_UNSAFE_IN_JSON = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE_IN_JSON_RE = re.compile(f"[{_UNSAFE_IN_JSON}]")
_UNSAFE = re.compile(f"[\x00-\x1f{_UNSAFE_IN_JSON}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(text: object) -> str:
    """``text`` with each unsafe character shown as an escape (``\\x1b[31m``, ``\\n``)."""
    text = str(text)
    if text.isprintable():  # the common case, answered in C
        return text
    return _UNSAFE.sub(_escape, text)


def printable_json(document: str) -> str:
    """A JSON document (``ensure_ascii=False``) with the unsafe characters JSON leaves
    raw (DEL, C1, separators, overrides) as ``\\uXXXX`` escapes: the same JSON, inert."""
    return _UNSAFE_IN_JSON_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
