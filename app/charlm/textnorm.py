"""One rule for every piece of text a user gives us: files, uploads, prompts, prefixes.

Bytes: UTF-8 (a byte-order mark is dropped) or UTF-16/UTF-32 with a byte-order mark.
Line breaks: CRLF, CR, LF, NEL (U+0085) and the Unicode line and paragraph separators all
become '\\n'. Spaces: a tab, a no-break space and every other Unicode space separator (category
Zs) become ' '; in a name, runs of spaces become one and the ends are stripped. Text is NFC.
Only control characters (Unicode category Cc) are refused, named with their line number.
Invisible formatting characters (category Cf: soft hyphens, zero-width spaces, direction marks
and overrides, a stray byte-order mark) are dropped, except the zero-width non-joiner and joiner
(U+200C, U+200D) that Persian, Indic scripts and emoji need: otherwise "al\u200bpha" would look
like "alpha" and still count as a new name.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import unicodedata
from pathlib import Path

from .errors import InvalidInput

_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
_LINE_BREAKS = re.compile("\r\n|[\r\u0085\u2028\u2029]")
_SPACES = re.compile(r"[^\S\n\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")  # whitespace that is not a line break
_RUNS_OF_SPACES = re.compile(" {2,}")
_KEPT_FORMAT = {"\u200c", "\u200d"}  # zero-width non-joiner and joiner: part of how some scripts spell


def decode_text(raw: bytes, source: str = "input") -> str:
    """Bytes as text by the rule above; InvalidInput names the source and what to do."""
    for bom, codec, label in _BOMS:
        if raw.startswith(bom):
            try:
                text = raw[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"{source} starts with a {label} byte-order mark but is not valid {label} "
                                   f"(bad bytes at offset {exc.start + len(bom)}); save it as UTF-8") from None
            break
    else:
        if b"\x00" in raw:
            raise InvalidInput(f"{source} contains NUL bytes: it is binary, or UTF-16 without a byte-order mark; "
                               "save it as UTF-8 text")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise InvalidInput(f"{source} is not UTF-8 text (line {line}, byte offset {exc.start}); "
                               "save it as UTF-8") from None
    if not text.strip():
        raise InvalidInput(f"{source} is empty (or only white space)")
    return text


def read_text_file(path: str | Path) -> str:
    """Read a data file by the rule above, turning every way it can be unusable into InvalidInput."""
    p = Path(path)
    if p.is_dir():
        raise InvalidInput(f"data file {path} is a directory; give the path of a text file")
    if not p.is_file():
        raise InvalidInput(f"data file not found: {path}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"data file {path} cannot be read ({exc.strerror})") from None
    return decode_text(raw, f"data file {path}")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe_char(ch: str) -> str:
    """`'é'` for a printable character, `U+0007 (BELL)` for the rest."""
    if ch.isprintable():
        return repr(ch)
    return f"U+{ord(ch):04X}" + (f" ({unicodedata.name(ch)})" if unicodedata.name(ch, "") else "")


def clean_text(text: str, source: str = "text") -> str:
    """A text stream or prompt: NFC, '\\n' line breaks, plain spaces; control characters refused."""
    text = unicodedata.normalize("NFC", text)
    if any(unicodedata.category(c) == "Cf" for c in text):
        text = "".join(c for c in text if unicodedata.category(c) != "Cf" or c in _KEPT_FORMAT)
    text = _SPACES.sub(" ", _LINE_BREAKS.sub("\n", text))
    for number, line in enumerate(text.split("\n"), start=1):
        bad = next((c for c in line if unicodedata.category(c) == "Cc"), None)
        if bad is not None:
            where = f" line {number}" if "\n" in text else ""
            raise InvalidInput(f"{source}{where} contains the control character {describe_char(bad)}; remove it")
    return text


def collapse_spaces(text: str) -> str:
    """Runs of spaces as one space (names never hold two in a row)."""
    return _RUNS_OF_SPACES.sub(" ", text)


def clean_name(line: str, source: str = "name") -> str:
    """One name: the text rule, then single spaces and no spaces at the ends."""
    return collapse_spaces(clean_text(line, source).strip(" "))


def name_lines(text: str, source: str = "data") -> list[tuple[int, str]]:
    """(line number, cleaned name) for every line that holds a name, in file order."""
    cleaned = clean_text(text, source).split("\n")
    return [(i, name) for i, line in enumerate(cleaned, start=1) if (name := clean_name(line))]
