"""Name folding of SPEC §2: NFKC, no white space, one bracket style, traditional → simplified."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sanctiongate.domain.identifiers import (
    _BRACKETS,
    _nfkc,
    _simplified,
    normalise_name,
    normalise_names,
)

from .reference import full_width


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("北京某某科技有限公司", "北京某某科技有限公司"),
        ("北京 某某\t科技\n有限公司", "北京某某科技有限公司"),
        ("\u3000北京某某科技有限公司\u3000", "北京某某科技有限公司"),  # ideographic space
        ("北京\u00a0某某", "北京某某"),  # no-break space
        ("某某（北京）科技有限公司", "某某(北京)科技有限公司"),
        ("某某(北京)科技有限公司", "某某(北京)科技有限公司"),
        ("某某【北京】科技有限公司", "某某(北京)科技有限公司"),
        ("某某[北京]科技有限公司", "某某(北京)科技有限公司"),
        ("某某〔北京〕科技有限公司", "某某(北京)科技有限公司"),
        ("某某［北京］科技有限公司", "某某(北京)科技有限公司"),
        ("陝西某某建設集團有限公司", "陕西某某建设集团有限公司"),
        ("廣東省電力設計研究院", "广东省电力设计研究院"),
        ("張三", "张三"),
        (full_width("ABC") + "科技", "ABC科技"),
        ("abc科技", "ABC科技"),
        (full_width("abc") + "科技", "ABC科技"),
        ("阿卜杜拉・买买提", "阿卜杜拉·买买提"),  # the dots in transcribed names
        ("阿卜杜拉•买买提", "阿卜杜拉·买买提"),
    ],
)
def test_name_folding(raw: str, folded: str) -> None:
    assert normalise_name(raw) == folded


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("陝西某某（集團）有限公司", "陕西 某某(集团)有限公司"),
        ("【測試】ｔｅｓｔ公司", "[测试] TEST 公司"),
        ("薴麻紡織廠", "苎麻纺织厂"),  # OpenCC maps 薴 → 苧 → 苎 in two steps
    ],
)
def test_variants_of_one_name_fold_to_one_key(a: str, b: str) -> None:
    assert normalise_name(a) == normalise_name(b)


def test_different_names_stay_different() -> None:
    assert normalise_name("北京某某科技有限公司") != normalise_name("北京某某技术有限公司")


# Text that looks like real names: common and traditional CJK, brackets, spaces, Latin.
name_chars = st.sampled_from(
    list(
        "北京上海陕陝西广廣东東电電力科技有限公司集团團建设設某甲乙张張李王薴苧苎臺台灣湾"
        "（）()【】[]〔〕［］《》 \t\u3000\u00a0·・•"
    )
    + list("ABCxyz")
    + list(full_width("ABCxyz019"))
)
realistic_names = st.text(alphabet=name_chars, min_size=1, max_size=30)


@given(st.one_of(realistic_names, st.text(max_size=30)))
@example("ΐ")
@example("薴")
@example("A´")  # NFKC makes the accent "space + combining": dropping the space composes
def test_name_folding_is_idempotent(raw: str) -> None:
    once = normalise_name(raw)
    assert normalise_name(once) == once


@given(realistic_names)
def test_folded_names_have_no_white_space_and_one_bracket_style(raw: str) -> None:
    folded = normalise_name(raw)
    assert not any(c.isspace() for c in folded)
    assert not set(folded) & set("（）【】[]〔〕［］《》")


# Besides realistic names: any text, accents that compose with a neighbour, the separator the
# folding together uses, and what NFKC turns into brackets or spaces.
any_names = st.one_of(
    realistic_names,
    st.text(max_size=12),
    st.text(alphabet=st.sampled_from(list("A´\u0301\u0338ΐ\ue000（　｜|薴")), max_size=6),
)


@settings(max_examples=200)
@given(st.lists(any_names, min_size=64, max_size=90))
def test_names_folded_together_fold_as_each_alone(raws: list[str]) -> None:
    assert normalise_names(raws) == [normalise_name(raw) for raw in raws]


def test_a_name_carrying_the_separator_is_folded_alone() -> None:
    raws = ["陝西\ue000某某", *(f"某某{i}" for i in range(99))]
    assert normalise_names(raws) == [normalise_name(raw) for raw in raws]
    assert normalise_names(raws)[0] == "陕西\ue000某某"


def _fold_by_regex(raw: str) -> str:
    """The folding as first written (re.sub of \\s+, then translate every name): the faster
    steps of normalise_name (split/join; translate only where a bracket is) must agree."""
    folded = re.sub(r"\s+", "", _nfkc(raw).upper()).translate(_BRACKETS)
    return _simplified(_nfkc(folded))


@given(st.one_of(realistic_names, st.text(max_size=30)))
@example("\x1c\x1d\x1e\x1f\x85\u2028\u200b\ufeff")  # isspace() edge cases, and two that are not
@example("《〈〉》「」『』｛｝{}<>・•‧･●．")  # every bracket and dot folded
def test_name_folding_agrees_with_the_regex_folding(raw: str) -> None:
    assert normalise_name.__wrapped__(raw) == _fold_by_regex(raw)
