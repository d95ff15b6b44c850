"""Where an instance's file goes under the store root: a template of DICOM keywords.

The values come from whatever the peer sent, so every rendered directory or file name
is made a portable, harmless name: no separators, control characters or characters
Windows forbids, no ``.``/``..`` or hidden names, no trailing dot or space, no device
names, at most 100 bytes. A shortened value keeps a hash of the original so distinct
values stay distinct. Literal parts of the template are held to the same rules when
the template is parsed, so a bad template fails at open, not on the first instance.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from qrclient.net.dictionary import all_keywords, tag_of
from qrclient.store.attributes import tag_for
from qrclient.store.errors import StoreError

DEFAULT_LAYOUT = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
PLACEHOLDER = "UNKNOWN"  # for an empty or missing value
MAX_COMPONENT_BYTES = 100

_HASH_CHARS = 10
_MIN_FIELD_BYTES = 16  # room for some text, "~" and the hash
_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in "123456789¹²³"]
)
_UNSAFE_ASCII = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')
_UNSAFE_CHARS = frozenset('/\\<>:"|?*')
_FIELD = re.compile(r"(\{[^{}]*\})")
_DRIVE = re.compile(r"[A-Za-z]:")


_NAMES_KEPT = 4096  # rendered names remembered (a few KB); then forgotten at once


@dataclass(frozen=True, slots=True)
class _Field:
    keyword: str
    budget: int  # UTF-8 bytes this value may take in its component


_Part = str | _Field
_ErrorFactory = Callable[[str], StoreError]


class Layout:
    """A parsed, validated layout template."""

    __slots__ = ("_components", "_names", "keywords", "template")

    def __init__(self, template: str, components: tuple[tuple[_Part, ...], ...]) -> None:
        self.template = template
        # Per component: its parts, the keywords it names, and whether its rendered
        # names are kept. A retrieve stores series after series, so directory names
        # repeat instance after instance; a component naming the instance itself is
        # new every time, not worth keeping.
        self._components = tuple(
            (
                parts,
                tuple(p.keyword for p in parts if isinstance(p, _Field)),
                not any(isinstance(p, _Field) and p.keyword == "SOPInstanceUID" for p in parts),
            )
            for parts in components
        )
        self._names: dict[tuple[int, tuple[str, ...]], str] = {}
        self.keywords = frozenset(
            p.keyword for parts in components for p in parts if isinstance(p, _Field)
        )

    @classmethod
    def parse(cls, template: str) -> Layout:
        """Validate ``template``; StoreError naming it and what is expected otherwise."""

        def bad(why: str) -> StoreError:
            return StoreError(
                f"layout {template!r} {why}; expected a relative path of names and DICOM "
                f"keywords in braces, such as {DEFAULT_LAYOUT!r}"
            )

        if not template.strip():
            raise bad("is empty")
        if template.startswith(("/", "\\", "~")) or _DRIVE.match(template):
            raise bad("is an absolute path")
        if "\\" in template:
            raise bad("contains '\\' (separate directories with '/')")
        components = tuple(_parse_component(text, bad) for text in template.split("/"))
        layout = cls(template, components)
        if "SOPInstanceUID" not in layout.keywords:
            raise bad("lacks {SOPInstanceUID}, so instances would overwrite each other")
        return layout

    def render(self, values: Mapping[str, str]) -> str:
        """The relative path (``/``-separated) for an instance with these values."""
        names = []
        kept_names = self._names
        for index, (parts, keywords, kept) in enumerate(self._components):
            given = tuple([values.get(keyword, "") for keyword in keywords])
            name = kept_names.get((index, given)) if kept else None
            if name is None:
                name = _render_component(parts, given)
                if kept:
                    if len(kept_names) >= _NAMES_KEPT:
                        kept_names.clear()
                    kept_names[index, given] = name
            names.append(name)
        return "/".join(names)


def _render_component(parts: tuple[_Part, ...], given: tuple[str, ...]) -> str:
    fields = iter(given)
    return _finish_name(
        "".join(p if isinstance(p, str) else _field_text(next(fields), p.budget) for p in parts)
    )


def _parse_component(text: str, bad: _ErrorFactory) -> tuple[_Part, ...]:
    if not text:
        raise bad("has an empty directory name")
    tokens = [t for t in _FIELD.split(text) if t]
    keywords = []
    for token in tokens:
        if token.startswith("{") and token.endswith("}"):
            keywords.append(_check_keyword(token[1:-1], bad))
        elif "{" in token or "}" in token:
            raise bad("has unbalanced braces")
    literal_bytes = sum(len(t.encode()) for t in tokens if not t.startswith("{"))
    # One byte spare: a device name gets a "_" prefix.
    budget = (MAX_COMPONENT_BYTES - 1 - literal_bytes) // max(len(keywords), 1)
    if budget < _MIN_FIELD_BYTES:
        raise bad(f"has {text!r}, too long for a {MAX_COMPONENT_BYTES}-byte name")
    parts = tuple(_Field(t[1:-1], budget) if t.startswith("{") else t for t in tokens)
    sample = "".join(p if isinstance(p, str) else "x" for p in parts)
    if _finish_name(_clean_chars(sample)) != sample:
        raise bad(
            f"has {text!r}, not a portable name (leading dot, trailing dot or space, "
            'device name, control character or one of <>:"|?*)'
        )
    return parts


def _check_keyword(keyword: str, bad: _ErrorFactory) -> str:
    if tag_for(keyword) is not None:
        return keyword
    if keyword and tag_of(keyword) is not None:
        raise bad(f"uses {{{keyword}}}, which is not a top-level text attribute")
    close = difflib.get_close_matches(keyword, all_keywords(), n=1)
    hint = f" (did you mean {{{close[0]}}}?)" if close else ""
    raise bad(f"uses {{{keyword}}}, which is not a DICOM keyword{hint}")


def _field_text(value: str, budget: int) -> str:
    text = _clean_chars(value.strip()) or PLACEHOLDER
    encoded = text.encode()
    if len(encoded) <= budget:
        return text
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    kept = encoded[: budget - _HASH_CHARS - 1].decode("utf-8", "ignore")
    return f"{kept}~{digest}"


def _clean_chars(text: str) -> str:
    """Replace separators, control and other unsafe characters with ``_``."""
    if text.isascii():
        return _UNSAFE_ASCII.sub("_", text)
    return "".join(
        "_" if c in _UNSAFE_CHARS or unicodedata.category(c)[0] == "C" else c for c in text
    )


def _finish_name(name: str) -> str:
    """No leading dots, trailing dots or spaces, nor a Windows device name."""
    stripped = name.lstrip(".")
    name = "_" * (len(name) - len(stripped)) + stripped
    stripped = name.rstrip(". ")
    name = stripped + "_" * (len(name) - len(stripped))
    if name.split(".", 1)[0].rstrip(" ").upper() in _DEVICES:
        name = "_" + name
    return name
