"""Valid identifiers for tests, computed by the rules of SPEC §2 (GB 32100 / GB 11643)."""

from __future__ import annotations

import random

from sanctiongate.domain.identifiers import USCC_ALPHABET, resident_id_check_char, uscc_check_char

_rng = random.Random(20261123)


def uscc(region: str = "110105") -> str:
    body = "91" + region + "".join(_rng.choice(USCC_ALPHABET) for _ in range(9))
    return body + uscc_check_char(body)


def id_number(region: str = "110105", birth: str = "19800101") -> str:
    body = region + birth + f"{_rng.randrange(1000):03d}"
    return body + resident_id_check_char(body)


def with_bad_check(code: str) -> str:
    """The same code with a wrong check character (still well-formed)."""
    alphabet = USCC_ALPHABET if not code[:17].isdigit() or len(code) != 18 else "0123456789X"
    wrong = next(c for c in alphabet if c != code[-1])
    return code[:-1] + wrong
