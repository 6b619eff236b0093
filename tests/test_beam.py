"""The beam decoders against greedy decoding and brute force on tiny hand-built inputs (T <= 6)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mtlib.decode import (
    DecodeConfig,
    SegmentState,
    advance,
    allowed_mask,
    ctc_beam,
    ctc_greedy,
    s2s_beam,
    s2s_greedy,
)
from mtlib.vocab import Vocabulary


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def collapse(path) -> tuple:
    out, last = [], None
    for c in path:
        if c != 0 and c != last:
            out.append(int(c))
        last = c
    return tuple(out)


def labelling_log_probs(lp: np.ndarray) -> dict[tuple, float]:
    """Brute force: log P(labelling) = log sum over every path that collapses to it."""
    T, C = lp.shape
    probs: dict[tuple, float] = {}
    for path in itertools.product(range(C), repeat=T):
        p = sum(lp[t, c] for t, c in enumerate(path))
        key = collapse(path)
        probs[key] = np.logaddexp(probs.get(key, -np.inf), p)
    return probs


# --------------------------------------------------------------------------- CTC


@pytest.mark.parametrize("seed", range(6))
def test_ctc_beam_of_width_one_equals_greedy_on_confident_outputs(seed):
    """Where each slot's best token has p >= 0.9 (a trained model's regime) the single best
    prefix is the best path's. (With flat outputs a prefix beam sums paths, so it may differ.)"""
    rng = np.random.default_rng(seed)
    T, C = 12, 5
    best = rng.integers(0, C, T)
    p = np.full((T, C), 0.1 / (C - 1))
    p[np.arange(T), best] = 0.9
    lp = np.log(p)
    ids, slots = ctc_beam(lp, T, beam_width=1)
    g_ids, g_slots = ctc_greedy(lp, T)
    assert ids.tolist() == g_ids.tolist() and slots.tolist() == g_slots.tolist()


@pytest.mark.parametrize("seed", range(8))
def test_ctc_beam_finds_the_most_probable_labelling_and_beats_greedy(seed):
    rng = np.random.default_rng(100 + seed)
    T, C = 5, 3
    lp = log_softmax(rng.normal(size=(T, C)) * 1.5)
    probs = labelling_log_probs(lp)
    truth = max(probs, key=probs.get)
    ids, _ = ctc_beam(lp, T, beam_width=64)  # wider than every prefix there is: exhaustive
    assert tuple(ids.tolist()) == truth
    g_ids, _ = ctc_greedy(lp, T)
    narrow, _ = ctc_beam(lp, T, beam_width=2)
    assert probs[tuple(narrow.tolist())] >= probs[tuple(g_ids.tolist())] - 1e-12


def test_ctc_beam_keeps_the_slots_of_the_more_probable_path_when_prefixes_merge():
    """Token 1 is emitted at slot 0 (p 0.3) or, after a blank, at slot 1 (p 0.6): both paths are
    the labelling (1,); the slot kept must be the more probable path's, slot 1."""
    lp = np.log(np.array([[0.7, 0.3], [0.4, 0.6]]))
    ids, slots = ctc_beam(lp, 2, beam_width=4)
    assert ids.tolist() == [1] and slots.tolist() == [1]
    lp = np.log(np.array([[0.2, 0.8], [0.7, 0.3]]))  # now the early emission dominates
    ids, slots = ctc_beam(lp, 2, beam_width=4)
    assert ids.tolist() == [1] and slots.tolist() == [0]


# --------------------------------------------------------------------------- Seq2Seq

VOCAB = Vocabulary(max_shift=2, min_pitch=60, max_pitch=61)


class TableModel:
    """A stand-in decoder: logits from a fixed random table indexed by (step, previous token),
    with the state interface `s2s_greedy` and `s2s_beam` use."""

    def __init__(self, seed: int, steps: int):
        rng = np.random.default_rng(seed)
        self.table = torch.tensor(
            rng.normal(size=(steps + 1, VOCAB.size, VOCAB.size)) * 2.0, dtype=torch.float32
        )

    def init_state(self, H, mask):
        return torch.zeros(H.shape[0], dtype=torch.long)

    def decode_step(self, prev, state, H, mask):
        step = state.clamp(max=self.table.shape[0] - 1)
        return self.table[step, prev], state + 1, None

    @staticmethod
    def stack_states(states):
        return torch.cat(states)

    @staticmethod
    def unstack_states(state, n):
        return [state[i : i + 1] for i in range(n)]


def brute_force(model: TableModel, n_frames: int, cfg: DecodeConfig) -> tuple[list[int], float]:
    """Every sequence the grammar allows up to EOS, scored as the beam scores finished ones
    (sum of biased log-probs / length): the best one."""
    best: tuple[list[int], float] = ([], -np.inf)

    def walk(tokens: list[int], state: SegmentState, score: float) -> None:
        nonlocal best
        step = torch.tensor([len(tokens)])
        prev = torch.tensor([tokens[-1] if tokens else VOCAB.SOS])
        logp = torch.log_softmax(model.decode_step(prev, step, None, None)[0], -1)[0].numpy()
        allowed, bias = allowed_mask(state, VOCAB, n_frames, cfg)
        for tok in np.flatnonzero(allowed):
            s2 = SegmentState()
            for attr in SegmentState.__slots__:
                setattr(s2, attr, getattr(state, attr))
            s2.active = set(state.active)
            advance(s2, int(tok), VOCAB)
            total = score + float(logp[tok] + bias[tok])
            if s2.done:
                norm = total / (len(tokens) + 1)
                if norm > best[1]:
                    best = (tokens + [int(tok)], norm)
            else:
                walk(tokens + [int(tok)], s2, total)

    walk([], SegmentState(), 0.0)
    return best


def encoded(n: int = 1):
    return torch.zeros(n, 3, 4), torch.ones(n, 3, dtype=torch.bool)


@pytest.mark.parametrize("seed", range(4))
def test_s2s_beam_of_width_one_equals_constrained_greedy(seed):
    cfg = DecodeConfig(max_len=6, s2s_beam_width=1)
    model = TableModel(seed, steps=6)
    H, mask = encoded()
    assert s2s_beam(model, H, mask, VOCAB, [3], cfg) == s2s_greedy(
        model, H, mask, VOCAB, [3], cfg, constrained=True
    )


@pytest.mark.parametrize("seed", range(4))
def test_s2s_beam_wide_enough_equals_brute_force_and_scores_at_least_greedy(seed):
    cfg = DecodeConfig(max_len=5, s2s_beam_width=100000)
    model = TableModel(10 + seed, steps=5)
    H, mask = encoded()
    truth, truth_score = brute_force(model, 3, cfg)
    got = s2s_beam(model, H, mask, VOCAB, [3], cfg)[0]
    assert got == truth

    def score(tokens):
        s, total = SegmentState(), 0.0
        for i, tok in enumerate(tokens):
            logp = torch.log_softmax(
                model.decode_step(
                    torch.tensor([tokens[i - 1] if i else VOCAB.SOS]), torch.tensor([i]), None, None
                )[0],
                -1,
            )[0].numpy()
            allowed, bias = allowed_mask(s, VOCAB, 3, cfg)
            assert allowed[tok]
            total += float(logp[tok] + bias[tok])
            advance(s, tok, VOCAB)
        return total / len(tokens)

    greedy = s2s_greedy(model, H, mask, VOCAB, [3], cfg, constrained=True)[0]
    assert score(got) == pytest.approx(truth_score) and score(got) >= score(greedy) - 1e-9
