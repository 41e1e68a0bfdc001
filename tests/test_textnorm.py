"""The one text rule: encodings, line breaks, spaces and control characters (expected values by hand)."""

from __future__ import annotations

import codecs

import pytest

from app.charlm.errors import InvalidInput
from app.charlm.textnorm import clean_name, clean_text, decode_text, name_lines


@pytest.mark.parametrize("raw", [
    "Łukasz\nZoë\n".encode(),
    codecs.BOM_UTF8 + "Łukasz\nZoë\n".encode(),
    codecs.BOM_UTF16_LE + "Łukasz\nZoë\n".encode("utf-16-le"),
    codecs.BOM_UTF16_BE + "Łukasz\nZoë\n".encode("utf-16-be"),
    codecs.BOM_UTF32_LE + "Łukasz\nZoë\n".encode("utf-32-le"),
])
def test_every_supported_encoding_decodes_to_the_same_text(raw: bytes) -> None:
    assert decode_text(raw) == "Łukasz\nZoë\n"


@pytest.mark.parametrize("raw, fragment", [
    ("Ana\nBo\n".encode("utf-16-le"), "UTF-16 without a byte-order mark"),  # what Notepad can write
    (b"\x89PNG\r\n\x1a\n\x00\x00", "NUL bytes"),
    (b"Ana\nBo\nCaf\xe9\n", "line 3"),  # Latin-1 'é' on the third line
    (codecs.BOM_UTF16_LE + b"\x00\xd8", "not valid UTF-16"),  # a lone surrogate
    (b" \n\t\n", "empty"),
])
def test_unusable_bytes_are_named(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        decode_text(raw, "upload")


def test_every_line_break_convention_gives_the_same_lines() -> None:
    expected = [(1, "Aardonyx"), (2, "Abelisaurus"), (3, "Abrictosaurus")]
    for sep in ("\n", "\r\n", "\r", "\u2028", "\u0085"):
        assert name_lines(sep.join(["Aardonyx", "Abelisaurus", "Abrictosaurus"]) + sep) == expected


def test_spaces_tabs_and_no_break_spaces_become_single_spaces() -> None:
    assert clean_name("\tSan\u00a0\u00a0José \t del\u202fCabo  ") == "San José del Cabo"
    assert clean_name("Jose\u0301") == "José"  # NFC: e + combining acute is one character
    assert clean_name("\ufeffRex") == "Rex"  # a byte-order mark glued to a line is dropped
    # A text stream keeps its runs of spaces (indentation) but not its tabs.
    assert clean_text("  Thou\tart\u00a0more lovely\r\n") == "  Thou art more lovely\n"


def test_blank_lines_hold_no_name_and_keep_the_numbering() -> None:
    assert name_lines("Rex\n\n  \t\nT rex\n") == [(1, "Rex"), (4, "T rex")]


def test_control_characters_are_refused_with_their_line() -> None:
    with pytest.raises(InvalidInput, match=r"upload line 2 contains the control character U\+0007; remove it"):
        name_lines("Rex\nT\x07rex\n", "upload")
    with pytest.raises(InvalidInput, match=r"U\+000C"):
        clean_text("a page\x0cbreak")


def test_invisible_formatting_is_dropped_but_joiners_stay() -> None:
    assert clean_name("al\u200bpha") == "alpha"  # a zero-width space would make a "new" name look old
    assert clean_name("\u202eRex\u202c") == "Rex"  # a right-to-left override and its end
    assert clean_name("so\u00adphie") == "sophie"  # a soft hyphen
    assert clean_name("\u0645\u06cc\u200c\u0631\u0648\u06cc") == "\u0645\u06cc\u200c\u0631\u0648\u06cc"  # Persian ZWNJ
