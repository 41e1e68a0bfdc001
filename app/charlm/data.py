"""Reading and normalising training data: name lists (one per line) and text streams."""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import numpy as np

from .errors import InvalidInput
from .vocab import Vocab, describe_chars

MAX_NAME_LENGTH = 60
MAX_VOCAB = 200


def decode_text(raw: bytes, source: str = "input") -> str:
    """UTF-8 text with no NUL bytes, else InvalidInput naming the source."""
    if b"\x00" in raw:
        raise InvalidInput(f"{source} looks binary (it contains NUL bytes); expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source} is not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise InvalidInput(f"{source} is empty")
    return text


def read_text_file(path: str | Path) -> str:
    """Read a UTF-8 data file, turning every way it can be unusable into InvalidInput."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"data file not found: {path}")
    return decode_text(p.read_bytes(), f"data file {path}")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_name(line: str) -> str:
    """How a name is seen by a names model: NFC, stripped, lowercased."""
    return unicodedata.normalize("NFC", line).strip().lower()


def normalise_text(text: str) -> str:
    """How a text model sees its stream: NFC, lowercased (as the course does), '\\n' newlines."""
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").lower()


def parse_names(text: str) -> list[str]:
    """Every non-empty line as a normalised name, in file order (duplicates kept)."""
    names = [normalise_name(line) for line in text.splitlines()]
    return [n for n in names if n]


def check_names(names: list[str], min_distinct: int = 1) -> list[str]:
    """Distinct names in first-seen order, after checking the limits a names model needs."""
    distinct = list(dict.fromkeys(names))
    if len(distinct) < min_distinct:
        raise InvalidInput(f"need at least {min_distinct} distinct names, got {len(distinct)}")
    for n in distinct:
        if len(n) > MAX_NAME_LENGTH:
            raise InvalidInput(f"name longer than {MAX_NAME_LENGTH} characters: {n[:30]!r}...")
        bad = {c for c in n if not c.isprintable()}
        if bad:
            raise InvalidInput(f"names contain non-printable characters: {describe_chars(bad)}")
    alphabet = set("".join(distinct))
    if len(alphabet) > MAX_VOCAB:
        raise InvalidInput(f"too many distinct characters ({len(alphabet)} > {MAX_VOCAB})")
    return distinct


def names_batch(encoded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad encoded names into (T, B) inputs, targets and mask; the boundary 0 starts and ends each."""
    T = max(len(e) for e in encoded) + 1
    B = len(encoded)
    inputs = np.zeros((T, B), dtype=np.int64)
    targets = np.zeros((T, B), dtype=np.int64)
    mask = np.zeros((T, B), dtype=bool)
    for b, e in enumerate(encoded):
        n = len(e)
        inputs[1 : n + 1, b] = e
        targets[:n, b] = e
        mask[: n + 1, b] = True
    return inputs, targets, mask


def encode_names(vocab: Vocab, names: list[str]) -> list[np.ndarray]:
    """Encode names, naming every unknown character at once."""
    bad = set().union(*(vocab.unknown(n) for n in names)) if names else set()
    if bad:
        raise InvalidInput(f"characters not in the model's vocabulary: {describe_chars(bad)}")
    return [vocab.encode(n) for n in names]
