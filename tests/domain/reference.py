"""An independent reference for the check characters of SPEC §2, written from the SPEC's text.

Deliberately shares nothing with ``sanctiongate.domain.identifiers`` (not even the alphabet or
the weights), so that a slip in the code cannot be copied into the expected values.
"""

from __future__ import annotations

from datetime import date

# GB 32100-2015 as SPEC §2 states it.
USCC_CHARS = "0123456789" + "ABCDEFGH" + "JKLMN" + "PQR" + "TU" + "WXY"
USCC_W = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]

# GB 11643-1999 as SPEC §2 states it.
ID_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_CHECK = "10X98765432"


def ref_uscc_check(first17: str) -> str:
    assert len(first17) == 17
    total = 0
    for position, char in enumerate(first17):
        total += USCC_CHARS.index(char) * USCC_W[position]
    value = 31 - total % 31
    if value == 31:
        value = 0
    return USCC_CHARS[value]


def ref_id_check(first17: str) -> str:
    assert len(first17) == 17 and first17.isdigit()
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_W, strict=True)) % 11]


def ref_id_number(region: str, birth: date, sequence: int) -> str:
    body = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return body + ref_id_check(body)


def full_width(text: str) -> str:
    """ASCII → the full-width forms a Chinese input method types (Ａ, １, ...)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)
