"""Identifier and name rules of SPEC §2: validation, normalisation, masking.

Pure functions only. Codes are validated by *form* (length, alphabet, birth date) and by
*check character* separately, because a listing whose code is well-formed but fails its check
must be kept and flagged (dropping a court listing is worse than keeping it), while a check
request with such a code is most often a typing slip.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"

_ID18_FORM = re.compile(r"[0-9]{17}[0-9X]")  # ASCII digits: \d would take any script's
_ID15_FORM = re.compile(r"[0-9]{15}")


class IdentifierKind(StrEnum):
    USCC = "uscc"
    RESIDENT_ID = "id_number"


class IdentifierError(ValueError):
    """A malformed identifier: wrong length, alphabet or impossible birth date."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Identifier(NamedTuple):
    """Immutable; a NamedTuple, not a frozen dataclass: made for every code of every message,
    and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` a field) cost three times
    as much."""

    kind: IdentifierKind
    value: str  # normalised (18 characters)
    check_ok: bool  # False: well-formed, but its check character is wrong

    @property
    def masked(self) -> str:
        """The value as it may be shown. A code that only failed as an ID number (a typo in
        its birth date, say) and was read as a USCC may still be someone's ID number: shown
        masked too (an all-digit USCC loses nothing its owner needs to see)."""
        personal = self.kind is IdentifierKind.RESIDENT_ID or (
            not self.check_ok and _ID18_FORM.fullmatch(self.value) is not None
        )
        return mask_identifier(self.value) if personal else self.value


def normalise_code(raw: str) -> str:
    """Trim, NFKC (full-width → half-width) and upper-case, as SPEC §2 asks before matching.

    NFKC again after upper-casing: a few letters (ΐ, ΰ, …) upper-case to a decomposed sequence,
    and a normalised key must stay the same when normalised again.
    """
    if raw.isascii():  # NFKC leaves ASCII as it is: the usual case, a few times cheaper
        return raw.upper().strip()
    return _nfkc(_nfkc(raw).upper()).strip()


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


# Check characters run for every code of every message (and every stored record read), so
# they are worked out by int() in C, not summed in Python. The weights are powers: a USCC's
# 3^i mod 31 (i from the first character), an ID number's 2^(17-i) mod 11. A number written in
# base b is Σ digit × b^position, and b ≡ 3 (mod 31) for b = 34, b ≡ 2 (mod 11) for b = 13, so
# the weighted sums are int() of the characters in base 34 (USCC values as base-31 digits,
# read last character first) and twice int() of the digits in base 13, taken mod 31 and 11.
# tests/domain/test_identifiers.py checks both against the weights of the SPEC.
# A USCC character's byte → its value as a base-31 digit (int() reads 0-9, a-u); every other
# byte → "!", which int() refuses in any base: ``b"!" in code.encode().translate(USCC_DIGITS)``
# says a code holds a character outside the alphabet (or a non-ASCII one).
USCC_DIGITS = bytes.maketrans(
    USCC_ALPHABET.encode() + bytes(b for b in range(256) if chr(b) not in USCC_ALPHABET),
    b"0123456789abcdefghijklmnopqrstu" + b"!" * (256 - len(USCC_ALPHABET)),
)
assert tuple(pow(3, i, 31) for i in range(17)) == USCC_WEIGHTS
assert tuple(pow(2, 17 - i, 11) for i in range(17)) == ID_WEIGHTS


def uscc_check_char(first17: str) -> str:
    digits = first17[::-1].encode().translate(USCC_DIGITS)
    if len(digits) != 17 or b"!" in digits:
        raise ValueError("a USCC check character needs 17 characters of the USCC alphabet")
    return USCC_ALPHABET[-int(digits, 34) % 31]


def resident_id_check_char(first17: str) -> str:
    if len(first17) != 17 or not (first17.isascii() and first17.isdigit()):
        raise ValueError("an ID check digit needs 17 digits")
    return ID_CHECK_CHARS[2 * int(first17, 13) % 11]


# Parsing is pure and an entry's codes are parsed twice (validation, then the anomaly flags):
# cache it. Errors are not cached (lru_cache does not keep exceptions).
# An Identifier without NamedTuple's ``__new__`` (a Python function: a tenth of a parse, made
# for every code of every message): tuple.__new__ makes the same Identifier.
_identifier = tuple.__new__
_USCC_KIND, _ID_KIND = IdentifierKind.USCC, IdentifierKind.RESIDENT_ID


@lru_cache(maxsize=65536)
def parse_uscc(raw: str) -> Identifier:
    # normalise_code inlined for the usual ASCII code (a call is a tenth of a parse).
    value = raw.upper().strip() if raw.isascii() else normalise_code(raw)
    # The form and the check from one translation (uscc_check_char's, here for all 18): 18
    # bytes without a "!" are 18 characters of the alphabet, whatever else is a form error.
    digits = value.encode().translate(USCC_DIGITS)
    if len(digits) != 18 or b"!" in digits:
        if len(value) != 18:
            raise IdentifierError("uscc_length", f"a USCC has 18 characters, got {len(value)}")
        raise IdentifierError("uscc_alphabet", "a USCC uses only 0-9 and A-Y without I, O, S, V, Z")
    check = USCC_ALPHABET[-int(digits[16::-1], 34) % 31]
    return _identifier(Identifier, (_USCC_KIND, value, check == value[17]))


def _birth_date_ok(yyyymmdd: str) -> bool:
    year, month, day = int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:])
    if not 1900 <= year <= 2099:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=65536)
def parse_resident_id(raw: str) -> Identifier:
    value = raw.upper().strip() if raw.isascii() else normalise_code(raw)
    if _ID15_FORM.fullmatch(value):
        # Old-style numbers (1984-1999) carry a YYMMDD birth date of the 1900s and no check digit.
        if not _birth_date_ok("19" + value[6:12]):
            raise IdentifierError("id_birth_date", "the birth date in the ID number is impossible")
        first17 = value[:6] + "19" + value[6:]
        return Identifier(
            IdentifierKind.RESIDENT_ID, first17 + resident_id_check_char(first17), True
        )
    if len(value) not in (15, 18):
        raise IdentifierError(
            "id_length",
            f"a resident ID number has 18 (or old-style 15) characters, got {len(value)}",
        )
    if not _ID18_FORM.fullmatch(value):
        raise IdentifierError(
            "id_alphabet", "a resident ID number is 17 digits and a check digit 0-9 or X"
        )
    if not _birth_date_ok(value[6:14]):
        raise IdentifierError("id_birth_date", "the birth date in the ID number is impossible")
    check = ID_CHECK_CHARS[2 * int(value[:17], 13) % 11]  # resident_id_check_char's: 17 digits
    return _identifier(Identifier, (_ID_KIND, value, check == value[17]))


def parse_any(raw: str) -> Identifier:
    """Classify a bare identifier (as in ``GET /v1/subjects/{identifier}``).

    An 18-digit string is in both alphabets: a resident ID reading wins when its birth date is
    real and its check digit holds, then a USCC whose check holds, then any well-formed form.
    """
    candidates: list[Identifier] = []
    errors: list[IdentifierError] = []
    for parse in (parse_resident_id, parse_uscc):
        try:
            candidates.append(parse(raw))
        except IdentifierError as exc:
            errors.append(exc)
    for ident in candidates:
        if ident.check_ok:
            return ident
    if candidates:
        return candidates[0]
    raise IdentifierError(
        "identifier_form", "not a USCC (18 characters) nor a resident ID number (18 or 15)"
    )


def mask_identifier(value: str) -> str:
    """Mask the middle of a personal ID number: ``110105********002X``.

    Works on any string (also malformed input echoed in an error), never revealing more than
    the region code and the last four characters, and less for short strings.
    """
    n = len(value)
    if n >= 14:
        return value[:6] + "*" * (n - 10) + value[-4:]
    if n >= 8:
        return value[:2] + "*" * (n - 4) + value[-2:]
    return "*" * n


_BRACKETS = str.maketrans(
    {
        "（": "(",
        "）": ")",
        "［": "(",
        "］": ")",
        "[": "(",
        "]": ")",
        "【": "(",
        "】": ")",
        "〔": "(",
        "〕": ")",
        "〖": "(",
        "〗": ")",
        "｛": "(",
        "｝": ")",
        "{": "(",
        "}": ")",
        "「": "(",
        "」": ")",
        "『": "(",
        "』": ")",
        "<": "(",
        ">": ")",
        "《": "(",
        "》": ")",
        "〈": "(",
        "〉": ")",
        "・": "·",
        "•": "·",
        "‧": "·",
        "･": "·",
        "●": "·",
        "．": "·",
    }
)


# Most names hold none of these: a search says so several times faster than translate()
# walks a Chinese name.
_BRACKETED = re.compile("[" + re.escape("".join(map(chr, _BRACKETS))) + "]")


@lru_cache(maxsize=1)
def _t2s():  # type: ignore[no-untyped-def]
    import opencc  # a maintained dictionary, not a hand-written table

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=65536)
def normalise_name(raw: str) -> str:
    """Fold a subject's name for matching: NFKC, no white space, one bracket style, 简体."""
    return _fold(raw)


def _fold(text: str) -> str:
    # split() splits at exactly the white space of the regex \s (both ask str.isspace), and
    # joining its parts is a few times faster than re.sub.
    folded = "".join(_nfkc(text).upper().split())
    if _BRACKETED.search(folded):
        folded = folded.translate(_BRACKETS)
    # NFKC once more: upper-casing (ΐ) and dropping a space that NFKC made of a spacing accent
    # (A´ → "A \u0301" → "A\u0301") leave sequences that compose, and a key must be stable.
    return _simplified(_nfkc(folded))


# Between names folded together: a private-use character, which no step of the fold changes,
# removes, composes with a neighbour or produces (white space would be dropped, so the usual
# separators would not do).
_NAME_SEPARATOR = "\ue000"
_FOLD_TOGETHER_FROM = 64  # names; below, one at a time through the cache is as cheap


def normalise_names(raws: Sequence[str]) -> list[str]:
    """:func:`normalise_name` of each, for many names at once (a batch's): the fold runs once
    over all of them joined, half the cost of a call per name. Names that carry the separator
    (or anything the fold turns into it) are folded one at a time instead."""
    if len(raws) < _FOLD_TOGETHER_FROM:
        return [normalise_name(raw) for raw in raws]
    folded = _fold(_NAME_SEPARATOR.join(raws)).split(_NAME_SEPARATOR)
    if len(folded) != len(raws):
        return [normalise_name(raw) for raw in raws]
    return folded


def _simplified(text: str) -> str:
    # OpenCC's t2s table chains a few characters (薴 → 苧 → 苎): convert until nothing changes,
    # so a name written either way gets the same key.
    for _ in range(4):
        converted = _t2s().convert(text)
        if converted == text:
            break
        text = converted
    return text
