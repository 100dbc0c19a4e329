"""Identifier rules of SPEC §2: USCC and resident ID validation, normalisation, masking."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sanctiongate.domain.identifiers import (
    IdentifierError,
    IdentifierKind,
    mask_identifier,
    normalise_code,
    parse_any,
    parse_resident_id,
    parse_uscc,
    resident_id_check_char,
    uscc_check_char,
)

from .reference import (
    ID_CHECK,
    USCC_CHARS,
    full_width,
    ref_id_check,
    ref_id_number,
    ref_uscc_check,
)

# Codes of real registered organisations; each is confirmed below by the reference, not trusted.
REAL_USCCS = [
    "91110000100010433L",
    "91110108551385082Q",
    "91440300708461136T",
    "911100001000128855",
    "91310000132200821H",
    "91110000802100433B",
]
SPEC_FAILING_USCC = "91350203M0001QAY9B"  # SPEC §2: on a real register, fails its check
GB_EXAMPLE_ID = "11010519491231002X"  # the worked example of GB 11643-1999


# --- USCC --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", REAL_USCCS)
def test_real_uscc_validates(code: str) -> None:
    assert ref_uscc_check(code[:17]) == code[17], "vector is wrong, not the code"
    ident = parse_uscc(code)
    assert ident == parse_uscc(code)
    assert (ident.kind, ident.value, ident.check_ok) == (IdentifierKind.USCC, code, True)
    assert uscc_check_char(code[:17]) == code[17]


def test_spec_example_is_well_formed_but_fails_its_check() -> None:
    assert ref_uscc_check(SPEC_FAILING_USCC[:17]) != SPEC_FAILING_USCC[17]
    ident = parse_uscc(SPEC_FAILING_USCC)
    assert ident.value == SPEC_FAILING_USCC
    assert ident.check_ok is False


def test_uscc_check_value_31_maps_to_zero() -> None:
    # Σ ≡ 0 (mod 31) gives 31 − 0 = 31, which SPEC §2 maps to '0'. All zeros has Σ = 0.
    assert uscc_check_char("0" * 17) == "0"
    assert parse_uscc("0" * 18).check_ok


@pytest.mark.parametrize(
    "raw",
    [
        "91110000100010433l",  # lower-case check character
        "  91110000100010433L\t",
        "\u300091110000100010433L\n",  # ideographic space (NFKC → space) around it
        full_width("91110000100010433L"),
        full_width("91110000100010433l"),
    ],
)
def test_uscc_input_forms_normalise(raw: str) -> None:
    ident = parse_uscc(raw)
    assert ident.value == "91110000100010433L"
    assert ident.check_ok


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "uscc_length"),
        ("9111000010001043", "uscc_length"),
        ("91110000100010433LX", "uscc_length"),
        ("9111 0000100010433L", "uscc_length"),
        ("91110000I00010433L", "uscc_alphabet"),  # I, O, S, V, Z are not in the alphabet
        ("91110000O00010433L", "uscc_alphabet"),
        ("91110000S00010433L", "uscc_alphabet"),
        ("91110000V00010433L", "uscc_alphabet"),
        ("9111000Z100010433L", "uscc_alphabet"),
        ("91110000-00010433L", "uscc_alphabet"),
        ("91110000陕00010433L", "uscc_alphabet"),
    ],
)
def test_malformed_uscc_is_an_error(raw: str, code: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_uscc(raw)
    assert caught.value.code == code


# --- resident ID -------------------------------------------------------------------------


def test_gb_worked_example_validates() -> None:
    assert ref_id_check(GB_EXAMPLE_ID[:17]) == "X"
    ident = parse_resident_id(GB_EXAMPLE_ID)
    assert (ident.kind, ident.value, ident.check_ok) == (
        IdentifierKind.RESIDENT_ID,
        GB_EXAMPLE_ID,
        True,
    )
    assert resident_id_check_char(GB_EXAMPLE_ID[:17]) == "X"


@pytest.mark.parametrize(
    "raw",
    [
        "11010519491231002x",
        " 11010519491231002X ",
        full_width("11010519491231002x"),
        "\u300011010519491231002X\u3000",
    ],
)
def test_resident_id_input_forms_normalise(raw: str) -> None:
    assert parse_resident_id(raw).value == GB_EXAMPLE_ID


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("110105491231002", GB_EXAMPLE_ID),
        ("440524800101001", ref_id_number("440524", date(1980, 1, 1), 1)),
        ("110105960229123", ref_id_number("110105", date(1996, 2, 29), 123)),
    ],
)
def test_fifteen_digit_number_is_converted(old: str, new: str) -> None:
    ident = parse_resident_id(old)
    assert ident.value == new
    assert ident.check_ok  # an old number has no check digit to fail: we compute it
    assert parse_resident_id(ident.value) == ident


@pytest.mark.parametrize(
    ("birth", "ok"),
    [
        ("20000229", True),  # divisible by 400: leap
        ("19000229", False),  # divisible by 100 only: not leap
        ("20040229", True),
        ("19990229", False),
        ("19800230", False),
        ("19800431", False),
        ("19801301", False),
        ("19800001", False),
        ("19800100", False),
        ("19801231", True),
        ("00000000", False),
    ],
)
def test_birth_date_must_be_real(birth: str, ok: bool) -> None:
    body = "110105" + birth + "123"
    number = body + ref_id_check(body)
    if ok:
        assert parse_resident_id(number).check_ok
    else:
        with pytest.raises(IdentifierError) as caught:
            parse_resident_id(number)
        assert caught.value.code == "id_birth_date"


@pytest.mark.parametrize("yymmdd", ["000229", "970229", "991301", "800132"])
def test_fifteen_digit_impossible_birth_date(yymmdd: str) -> None:
    # An old number's year is 19YY: 1900 was no leap year, so 000229 is impossible.
    with pytest.raises(IdentifierError) as caught:
        parse_resident_id("110105" + yymmdd + "123")
    assert caught.value.code == "id_birth_date"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "id_length"),
        ("1101051949123100", "id_length"),
        ("11010519491231002", "id_length"),
        ("11010519491231002X1", "id_length"),
        ("1101051949123100AX", "id_alphabet"),
        ("110105194912310X2X", "id_alphabet"),
        ("11010519491231002Y", "id_alphabet"),
        ("11010549123100X", "id_alphabet"),  # 15 characters, not all digits
        # Digits of other scripts (NFKC keeps them): a malformed number, not a ValueError
        # from the check digit (GET /v1/subjects answered 500 for one)
        ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "id_alphabet"),
        ("११०१०५४९१२३१००२", "id_alphabet"),  # 15 Devanagari digits
    ],
)
def test_malformed_resident_id_is_an_error(raw: str, code: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_resident_id(raw)
    assert caught.value.code == code


def test_well_formed_id_with_wrong_check_digit_is_flagged_not_rejected() -> None:
    ident = parse_resident_id("110105194912310021")
    assert ident.value == "110105194912310021"
    assert ident.check_ok is False


# --- classification of a bare identifier ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        (GB_EXAMPLE_ID, IdentifierKind.RESIDENT_ID, GB_EXAMPLE_ID),
        ("11010519491231002x", IdentifierKind.RESIDENT_ID, GB_EXAMPLE_ID),
        ("110105491231002", IdentifierKind.RESIDENT_ID, GB_EXAMPLE_ID),
        ("91110000100010433L", IdentifierKind.USCC, "91110000100010433L"),
        ("911100001000128855", IdentifierKind.USCC, "911100001000128855"),  # all digits
        (SPEC_FAILING_USCC, IdentifierKind.USCC, SPEC_FAILING_USCC),
    ],
)
def test_parse_any_classifies(raw: str, kind: IdentifierKind, value: str) -> None:
    ident = parse_any(raw)
    assert (ident.kind, ident.value) == (kind, value)


@pytest.mark.parametrize("raw", ["", "abc", "9111000010001043", "91110000I00010433L"])
def test_parse_any_rejects_what_is_neither(raw: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_any(raw)
    assert caught.value.code == "identifier_form"


# --- masking -----------------------------------------------------------------------------


def test_resident_id_is_masked_in_the_spec_shape() -> None:
    assert parse_resident_id(GB_EXAMPLE_ID).masked == "110105********002X"
    assert mask_identifier(GB_EXAMPLE_ID) == "110105********002X"


def test_uscc_is_not_masked() -> None:
    assert parse_uscc("91110000100010433L").masked == "91110000100010433L"


def test_an_id_number_typo_read_as_a_uscc_is_masked() -> None:
    # Born on the 32nd of the 13th month: no resident ID, so it reads as a USCC failing its
    # check. It is someone's ID number with a slip of the finger: never echoed whole.
    typo = parse_any("110105198013321065")
    assert typo.kind is IdentifierKind.USCC and not typo.check_ok
    assert typo.masked == "110105********1065"


def test_an_all_digit_uscc_whose_check_holds_is_shown() -> None:
    body = next(
        b for b in (f"9111010500000{i:04d}" for i in range(100)) if uscc_check_char(b) < "A"
    )
    code = body + uscc_check_char(body)
    ident = parse_any(code)
    assert ident.kind is IdentifierKind.USCC and ident.check_ok
    assert ident.masked == code


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("", ""),
        ("1234567", "*******"),
        ("12345678", "12****78"),
        ("1101051949123", "11*********23"),
        ("11010519491231", "110105****1231"),
    ],
)
def test_short_strings_reveal_less(raw: str, masked: str) -> None:
    assert mask_identifier(raw) == masked


# --- properties --------------------------------------------------------------------------

uscc_bodies = st.text(alphabet=USCC_CHARS, min_size=17, max_size=17)
valid_usccs = uscc_bodies.map(lambda body: body + ref_uscc_check(body))

regions = st.text(alphabet="0123456789", min_size=6, max_size=6)
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))
sequences = st.integers(0, 999)
valid_ids = st.builds(ref_id_number, regions, births, sequences)


@given(valid_usccs)
def test_every_valid_uscc_validates_and_round_trips(code: str) -> None:
    ident = parse_uscc(code)
    assert ident.check_ok and ident.value == code
    assert parse_uscc(ident.value) == ident
    assert parse_uscc(" " + full_width(code.lower()) + " ") == ident


@given(valid_usccs)
def test_every_wrong_uscc_check_character_fails(code: str) -> None:
    for wrong in USCC_CHARS.replace(code[17], ""):
        assert parse_uscc(code[:17] + wrong).check_ok is False


@given(valid_usccs, st.integers(0, 16), st.integers(1, len(USCC_CHARS) - 1))
def test_any_single_substitution_in_the_body_is_detected(code: str, at: int, shift: int) -> None:
    # 31 is prime and no weight is 0 mod 31, so every single substitution changes Σ mod 31.
    replacement = USCC_CHARS[(USCC_CHARS.index(code[at]) + shift) % len(USCC_CHARS)]
    corrupted = code[:at] + replacement + code[at + 1 :]
    assert corrupted != code
    assert parse_uscc(corrupted).check_ok is False


@given(valid_ids)
def test_every_valid_resident_id_validates_and_round_trips(number: str) -> None:
    ident = parse_resident_id(number)
    assert ident.check_ok and ident.value == number
    assert parse_resident_id(ident.value) == ident
    assert parse_resident_id(full_width(number.lower()) + "\t") == ident


@given(valid_ids)
def test_every_wrong_resident_id_check_character_fails(number: str) -> None:
    for wrong in ID_CHECK.replace(number[17], ""):
        assert parse_resident_id(number[:17] + wrong).check_ok is False


@given(regions, st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31)), sequences)
def test_every_old_number_converts_to_the_valid_new_one(
    region: str, birth: date, sequence: int
) -> None:
    old = f"{region}{birth:%y%m%d}{sequence:03d}"
    assert parse_resident_id(old).value == ref_id_number(region, birth, sequence)


@given(st.text(max_size=40))
def test_masking_never_reveals_more_than_first_six_and_last_four(raw: str) -> None:
    masked = mask_identifier(raw)
    assert len(masked) == len(raw)
    middle = masked[6 : max(6, len(raw) - 4)]
    assert set(middle) <= {"*"}
    assert sum(1 for c in masked if c != "*") <= 10
    assert all(b in ("*", a) for a, b in zip(raw, masked, strict=True))


@given(valid_ids)
def test_masked_id_has_the_spec_shape(number: str) -> None:
    assert parse_resident_id(number).masked == number[:6] + "*" * 8 + number[-4:]


code_like = st.text(
    alphabet=st.sampled_from(
        [*USCC_CHARS, *"abcdefghijklmnopqrstuvwxyzIOSVZ", *full_width(USCC_CHARS), *" \t\n\u3000"]
    ),
    max_size=24,
)


@given(st.one_of(code_like, st.text(max_size=24)))
@example("ΐ")  # upper-cases to a decomposed sequence that NFKC composes again
@example("ΰ")
@example("ª")  # NFKC gives a lower-case letter
def test_code_normalisation_is_idempotent(raw: str) -> None:
    once = normalise_code(raw)
    assert normalise_code(once) == once


# --- check characters against the reference, for any body ---------------------------------
# The code works them out with int() in other bases (identifiers.py says why that is the
# weighted sum); the reference sums the SPEC's weights.


@given(st.text(alphabet=USCC_CHARS, min_size=17, max_size=17))
def test_the_uscc_check_character_is_the_weighted_sums(body: str) -> None:
    assert uscc_check_char(body) == ref_uscc_check(body)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
@example("0" * 17)
@example("9" * 17)
def test_the_id_check_character_is_the_weighted_sums(body: str) -> None:
    assert resident_id_check_char(body) == ref_id_check(body)


@given(st.text(min_size=17, max_size=17).filter(lambda body: not set(body) <= set(USCC_CHARS)))
@example("1" * 16 + "_")  # int() would skip an underscore, or white space at either end
@example(" " + "1" * 16)
@example("+" + "1" * 16)
@example("a" * 17)  # lower case: int() reads it as a digit
@example("I" * 17)  # outside the alphabet, yet a digit to int() in base 34
@example("１" * 17)
def test_a_uscc_body_outside_the_alphabet_has_no_check_character(body: str) -> None:
    with pytest.raises(ValueError):
        uscc_check_char(body)


@pytest.mark.parametrize("body", ["1" * 16, "1" * 18, ""])
def test_a_uscc_body_of_another_length_has_no_check_character(body: str) -> None:
    with pytest.raises(ValueError):
        uscc_check_char(body)


@given(st.text(alphabet=USCC_CHARS * 4 + "IOSVZaz_ +-１Ａ\u00e9", min_size=17, max_size=19))
def test_a_uscc_is_well_formed_exactly_when_all_its_characters_are_of_the_alphabet(
    raw: str,
) -> None:
    value = normalise_code(raw)
    try:
        ident = parse_uscc(raw)
    except IdentifierError as exc:
        expected = "uscc_length" if len(value) != 18 else "uscc_alphabet"
        assert exc.code == expected
        assert len(value) != 18 or not set(value) <= set(USCC_CHARS)
        return
    assert len(value) == 18 and set(value) <= set(USCC_CHARS)
    assert ident.check_ok == (ref_uscc_check(value[:17]) == value[17])
