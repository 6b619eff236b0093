"""The vocabularies: the ids of the shared contract, encode/decode round trips, vectorised masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.params import config_from
from mtlib.vocab import CTCVocabulary, Event, Vocabulary


def test_contract_ids_at_defaults():
    v = Vocabulary()
    P = 108 - 21 + 1
    assert (v.PAD, v.SOS, v.EOS, v.TIE) == (0, 1, 2, 3)
    assert v.shift(1) == 4 and v.shift(64) == 67
    assert v.note_on(21) == 4 + 64 and v.note_on(108) == 4 + 64 + P - 1
    assert v.note_off(21) == 4 + 64 + P and v.note_off(108) == 4 + 64 + 2 * P - 1
    assert v.size == 4 + 64 + 2 * P == 244
    assert (v.shift_range, v.on_range, v.off_range) == ((4, 68), (68, 156), (156, 244))


def test_ctc_contract_ids():
    c = Vocabulary().ctc
    assert isinstance(c, CTCVocabulary) and c.blank == 0
    assert (
        c.note_on(21) == 1
        and c.note_on(108) == 88
        and c.note_off(21) == 89
        and c.note_off(108) == 176
    )
    assert c.size == 177 and c.on_range == (1, 89) and c.off_range == (89, 177)
    assert c.decode(0) == Event("blank") and c.decode(89) == Event("off", 21)


def test_small_vocabulary_known_answers():
    v = Vocabulary(max_shift=3, min_pitch=60, max_pitch=61)
    names = [str(v.decode(i)) for i in range(v.size)]
    assert names == [
        "PAD",
        "SOS",
        "EOS",
        "TIE",
        "SHIFT(1)",
        "SHIFT(2)",
        "SHIFT(3)",
        "ON(60)",
        "ON(61)",
        "OFF(60)",
        "OFF(61)",
    ]
    assert v.ctc.describe(range(v.ctc.size)) == "BLANK ON(60) ON(61) OFF(60) OFF(61)"
    assert v.describe([7, 3, 5, 9, 2, 99]) == "ON(60) TIE SHIFT(2) OFF(60) EOS ?99"


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 100), st.integers(0, 127), st.integers(0, 40), st.data())
def test_every_id_round_trips(max_shift, min_pitch, span, data):
    max_pitch = min(127, min_pitch + span)
    v = Vocabulary(max_shift, min_pitch, max_pitch)
    for codec in (v, v.ctc):
        token = data.draw(st.integers(0, codec.size - 1))
        ev = codec.decode(token)
        assert codec.encode(ev.type, ev.value) == token
    p = data.draw(st.integers(min_pitch, max_pitch))
    assert v.decode(v.note_on(p)) == Event("on", p) and v.decode(v.note_off(p)) == Event("off", p)
    assert v.ctc.decode(v.ctc.note_on(p)) == Event("on", p)
    k = data.draw(st.integers(1, max_shift))
    assert v.decode(v.shift(k)) == Event("shift", k)


def test_shifts_split_long_gaps():
    v = Vocabulary(max_shift=64)
    assert v.shifts(0) == []
    assert v.shifts(64) == [v.shift(64)]
    assert v.shifts(130) == [v.shift(64), v.shift(64), v.shift(2)]
    assert sum(v.decode(t).value for t in v.shifts(1000)) == 1000


def test_vectorised_masks_and_values():
    v = Vocabulary()
    tokens = np.array([v.TIE, v.shift(5), v.note_on(60), v.note_off(61), v.EOS])
    assert v.is_type(tokens, "shift").tolist() == [False, True, False, False, False]
    assert v.is_type(tokens, "on").tolist() == [False, False, True, False, False]
    assert v.values(tokens, "off").tolist() == [-1, -1, -1, 61, -1]
    assert v.values(tokens, "shift").tolist() == [-1, 5, -1, -1, -1]
    ctc = np.array([0, v.ctc.note_on(21), v.ctc.note_off(108)])
    assert v.ctc.values(ctc, "on").tolist() == [-1, 21, -1]


def test_errors_name_the_problem():
    v = Vocabulary()
    with pytest.raises(ValueError, match="token id 244 outside 0..243"):
        v.decode(244)
    with pytest.raises(ValueError, match="on value 20 outside 21..108"):
        v.note_on(20)
    with pytest.raises(ValueError, match="shift value 65 outside 1..64"):
        v.shift(65)
    with pytest.raises(ValueError, match="'shift' is not a token type"):
        v.ctc.encode("shift", 1)
    with pytest.raises(ValueError, match="vocab.max_shift must be at least 1"):
        Vocabulary(max_shift=0)
    with pytest.raises(ValueError, match="min_pitch <= vocab.max_pitch"):
        Vocabulary(min_pitch=90, max_pitch=80)


def test_built_from_params_and_config_round_trip():
    v = config_from(Vocabulary, {"max_shift": 32, "min_pitch": 30, "max_pitch": 90}, "vocab")
    assert v == Vocabulary(**v.config()) and v.size == 4 + 32 + 2 * 61
    with pytest.raises(KeyError, match="unknown key.*'vocab': max_pitches"):
        config_from(Vocabulary, {"max_pitches": 90}, "vocab")
