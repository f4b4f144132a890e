"""The pre-tokenisation classes are Unicode 16.0's, tiktoken's, on every Python: characters newer than
the running Python's tables, followed by contractions, get tiktoken's ids."""

from __future__ import annotations

import importlib
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from gpt2.tokenizer import Tokenizer
from gpt2.tokenizer.pretokenize import UNICODE_VERSION, letter_and_number_ranges, pretokenize

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_unicode_table.py"

# (code point, the Unicode version that assigned it): letters and numbers that Python 3.11 (Unicode 14.0)
# calls unassigned, so that without the shipped table "c's" split as "c'" + "s".
NEW_LETTERS = [
    (0x11F04, "15.0"),  # KAWI LETTER A
    (0x1E4D0, "15.0"),  # NAG MUNDARI LETTER O
    (0x1E030, "15.0"),  # MODIFIER LETTER CYRILLIC SMALL A (Lm)
    (0x31350, "15.0"),  # CJK Extension H, first
    (0x2EBF0, "15.1"),  # CJK Extension I, first
    (0x105C0, "16.0"),  # TODHRI LETTER A
    (0x16D43, "16.0"),  # KIRAT RAI LETTER A
    (0x1E5D0, "16.0"),  # OL ONAL LETTER O
    (0x10D4A, "16.0"),  # GARAY VOWEL SIGN A
]
NEW_NUMBERS = [
    (0x1E4F0, "15.0"),  # NAG MUNDARI DIGIT ZERO
    (0x11F50, "15.0"),  # KAWI DIGIT ZERO
    (0x1D2C0, "15.0"),  # KAKTOVIK NUMERAL ZERO (No)
    (0x16D70, "16.0"),  # KIRAT RAI DIGIT ZERO
    (0x1CCF0, "16.0"),  # OUTLINED DIGIT ZERO
    (0x1E5F1, "16.0"),  # OL ONAL DIGIT ZERO
    (0x11BF0, "16.0"),  # SUNUWAR DIGIT ZERO
]
# Assigned in Unicode 17.0, after tiktoken's 16.0: still neither letter nor number to tiktoken.
NEWER_THAN_TIKTOKEN = [0x2B73D, 0x32A9F, 0x11DE4]

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.gpt2()


def test_unicode_version_is_tiktokens():
    assert UNICODE_VERSION == "16.0.0"


@pytest.mark.parametrize(
    "code_point, version", NEW_LETTERS + NEW_NUMBERS, ids=lambda v: f"{v:X}" if isinstance(v, int) else v
)
def test_new_characters_before_contractions_match_tiktoken(tok, tiktoken_gpt2, code_point, version):
    c = chr(code_point)
    assert pretokenize(c + "'s") == [c, "'s"]
    assert pretokenize(f"a{c}'ll") == ([f"a{c}", "'ll"] if (code_point, version) in NEW_LETTERS else ["a", c, "'ll"])
    text = " ".join(f"{c}{contraction} x{c}{c}{contraction} 1{c}{contraction}" for contraction in CONTRACTIONS)
    text += f" {c}'S {c}'x {c}\u2019s\n{c}{c}"
    assert tok.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
    assert tok.decode(tok.encode_ordinary(text)) == text


@pytest.mark.parametrize("code_point", NEWER_THAN_TIKTOKEN, ids=lambda v: f"{v:X}")
def test_characters_newer_than_tiktoken_are_neither(tok, tiktoken_gpt2, code_point):
    c = chr(code_point)
    assert pretokenize(c + "'s") == [c + "'", "s"]
    text = f"{c}'s a{c}'ll 1{c}'d {c}{c}"
    assert tok.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)


def _membership(ranges):
    return {c for first, last in ranges for c in range(first, last + 1)}


def test_shipped_classes_agree_with_this_pythons_tables():
    """Where the running Python knows a character (13.0 to 15.1 on 3.10 to 3.13), its category agrees
    with the shipped 16.0 table: no letter or number changed class between those versions."""
    python_version = tuple(int(part) for part in unicodedata.unidata_version.split("."))
    if python_version > (16, 0, 0):
        pytest.skip(f"this Python's Unicode {unicodedata.unidata_version} is newer than the table's")
    letters, numbers = (_membership(ranges) for ranges in letter_and_number_ranges())
    assert not letters & numbers
    for code_point in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code_point))
        if category == "Cn":  # unassigned here; perhaps assigned since
            continue
        assert (category[0] == "L") == (code_point in letters), hex(code_point)
        assert (category[0] == "N") == (code_point in numbers), hex(code_point)


def _unicode_16_source() -> str | None:
    for name in ("unicodedata2", "unicodedata"):
        try:
            if importlib.import_module(name).unidata_version == "16.0.0":
                return name
        except ImportError:
            pass
    return None


@pytest.mark.skipif(_unicode_16_source() is None, reason="needs unicodedata2==16.0.0 (or Python 3.14) installed")
def test_shipped_table_is_what_the_script_generates():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout
