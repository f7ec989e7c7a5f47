"""Base64 fields: one strict decoder, one encoder, errors named by the caller;
signed text takes only the canonical spelling."""

from __future__ import annotations

import pytest

from modelchain.core.b64 import b64, unb64, unb64_canonical
from modelchain.errors import Base64Error, MalformedError, ProofError


def test_round_trip_is_standard_padded_base64() -> None:
    assert b64(b"\xfb\xff") == "+/8="
    assert unb64(b64(bytes(range(256))), "x") == bytes(range(256))


@pytest.mark.parametrize("text", ["+/8", "+/8=\n", "-_8=", "a b="])
def test_anything_but_strict_base64_is_refused(text: str) -> None:
    with pytest.raises(MalformedError, match="the field is not valid base64"):
        unb64(text, "the field")


def test_the_caller_names_the_error() -> None:
    with pytest.raises(ProofError, match="a proof hash"):
        unb64("!", "a proof hash", ProofError)
    with pytest.raises(Base64Error):
        unb64("!", "sig", Base64Error, not_text=MalformedError)
    with pytest.raises(MalformedError, match="must be base64 text") as info:
        unb64(3, "sig", Base64Error, not_text=MalformedError)
    assert not isinstance(info.value, Base64Error)


def test_signed_text_takes_only_the_canonical_spelling() -> None:
    assert unb64_canonical("+/8=", "root") == b"\xfb\xff"
    # "+/9=" decodes to the same bytes with a non-zero padding bit: refused,
    # where the field decoder takes it.
    assert unb64("+/9=", "root") == b"\xfb\xff"
    with pytest.raises(MalformedError, match=r"^root: non-canonical base64$"):
        unb64_canonical("+/9=", "root")
    for text in ("+/8", "+/8=\n", "-_8=", "a b="):
        with pytest.raises(MalformedError, match=r"^root: invalid base64$"):
            unb64_canonical(text, "root")
