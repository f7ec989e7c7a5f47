"""Canonical JSON: byte-exact RFC 8785, with the fast path checked against the reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from modelchain.core import canonical
from modelchain.errors import MalformedError, NonCanonicalError

# RFC 8785 section 3.2.2 and appendix B examples.
RFC_NUMBERS = [
    (0.0, "0"),
    (-0.0, "0"),
    (1e21, "1e+21"),
    (1e-7, "1e-7"),
    (123456789012345.67, "123456789012345.67"),
    (4.50, "4.5"),
    (2e-3, "0.002"),
    (0.000001, "0.000001"),
    (333333333.33333329, "333333333.3333333"),
    (1e30, "1e+30"),
    (5e-324, "5e-324"),
    (-1.7976931348623157e308, "-1.7976931348623157e+308"),
]


@pytest.mark.parametrize(("value", "text"), RFC_NUMBERS)
def test_numbers_follow_ecmascript(value: float, text: str) -> None:
    assert canonical.dumps(value) == text.encode()


def test_rfc8785_section_3_2_3_example() -> None:
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    want = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical.dumps(value) == want.encode()


def test_keys_sort_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16 and sorts before U+E000, unlike by code point.
    assert canonical.dumps({"\ue000": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ue000":1}'.encode()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2**53, {1: "int key"}, {"a": {2}}])
def test_values_json_cannot_carry_exactly_are_refused(bad: Any) -> None:
    with pytest.raises(MalformedError):
        canonical.dumps(bad)


@pytest.mark.parametrize(
    "text",
    [b'{"b":1,"a":2}', b'{"a":1,"a":1}', b'{"a": 1}', b"1.0", b"1E2", b'"\\u0061"', b"[1,]"],
)
def test_non_canonical_or_invalid_text_is_refused(text: bytes) -> None:
    with pytest.raises((NonCanonicalError, MalformedError)):
        canonical.loads_canonical(text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_path_matches_the_reference_implementation(value: Any) -> None:
    want = bytes(rfc8785.dumps(value))
    assert canonical.dumps(value) == want
    # canonical text is accepted unless it holds an integer beyond +-2**53
    # (a large float prints as an integer in JCS and parses back as one)
    try:
        parsed = json.loads(want)
        ok = bytes(rfc8785.dumps(parsed)) == want
    except rfc8785.CanonicalizationError:
        ok = False
    if ok:
        assert canonical.dumps(canonical.loads_canonical(want)) == want


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from([" ", "\n"]))
def test_whitespace_is_never_canonical(value: Any, space: str) -> None:
    text = json.dumps(value, indent=1, ensure_ascii=False).replace("\n", space)
    if text.encode() != bytes(rfc8785.dumps(value)):
        with pytest.raises((NonCanonicalError, MalformedError)):
            canonical.loads_canonical(text.encode())
