"""CTC over NOTE_ON/NOTE_OFF tokens on the shared encoder.

Each encoder frame gets `upsample` emission slots (a linear head to upsample * C logits, reshaped),
so a chord's many tokens can all be emitted within its frame. A token's time is the encoder frame
of the slot that emits it: `slot_to_frame`. Two things push emissions to the right frame: the
onset head's loss on the shared encoder, and (optionally) restricting alignments to a window
around each label's frame during training (`align_window`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtlib.models.encoder import Encoder, EncoderConfig, own_stream
from mtlib.vocab import Vocabulary


@dataclass
class CTCConfig:
    """`model.ctc` in params.yaml."""

    upsample: int = 3  # emission slots per encoder frame (a 10-note chord needs 10+ slots nearby)
    blank_prior: float = 0.9  # initial P(blank) per slot: the output bias starts there, not uniform
    align_window: int = 0  # > 0: in training, token c may only be emitted within this many encoder
    #                        frames of a label frame of c (0 = plain CTC, free alignments)
    onset_input: bool = False  # the output layer also reads the onset stack's output (gradient
    #                            stopped: the CTC loss never trains the onset stack); needs
    #                            model.encoder.onset_hidden > 0

    def __post_init__(self) -> None:
        if self.upsample < 1:
            raise ValueError(f"model.ctc.upsample must be >= 1, got {self.upsample}")
        if not 0.0 < self.blank_prior < 1.0:
            raise ValueError(f"model.ctc.blank_prior must be in (0, 1), got {self.blank_prior}")


class CTCModel(nn.Module):
    """Encoder → linear head with `upsample` slots per frame → log-softmax → CTC loss."""

    kind = "ctc"

    def __init__(self, enc_cfg: EncoderConfig, ctc_cfg: CTCConfig, vocab: Vocabulary):
        super().__init__()
        self.enc_cfg, self.cfg, self.vocab = enc_cfg, ctc_cfg, vocab
        self.codec = vocab.ctc  # the ids this model emits: blank, NOTE_ON(p), NOTE_OFF(p)
        self.vocab_size = self.codec.size
        self.encoder = Encoder(enc_cfg)
        self.head = nn.Linear(self.encoder.output_dim, ctc_cfg.upsample * self.vocab_size)
        self._init_blank_bias()
        self.onset_input = None
        if ctc_cfg.onset_input:
            if self.encoder.onset_stack is None:
                raise ValueError(
                    "model.ctc.onset_input needs the onset stack (model.encoder.onset_hidden > 0 "
                    "and onset_weight > 0): it reads the stack's output"
                )
            # Zero at the start and drawn from its own stream: the model starts exactly as
            # without it, and learns how much to read from the onset stack.
            with own_stream(4):
                self.onset_input = nn.Linear(
                    2 * enc_cfg.onset_hidden, ctc_cfg.upsample * self.vocab_size, bias=False
                )
            nn.init.zeros_(self.onset_input.weight)

    def _init_blank_bias(self) -> None:
        """Bias so that the initial softmax gives blank `blank_prior`, the rest equal shares.

        Most slots are blank in every alignment: starting there skips the first part of the
        all-blank plateau instead of first unlearning a uniform output."""
        p, C = self.cfg.blank_prior, self.vocab_size
        with torch.no_grad():
            bias = self.head.bias.view(self.cfg.upsample, C)
            bias.zero_()
            bias[:, self.codec.blank] = math.log(p / (1 - p) * (C - 1))

    def set_feature_stats(self, mean, std) -> None:
        self.encoder.set_feature_stats(mean, std)

    def emissions(self, batch: dict):
        """log_probs (B, T' * upsample, C), slot lengths (B,), encoder lengths, head logits."""
        hidden: dict[str, torch.Tensor] = {}
        H, lengths, heads = self.encoder.encode_batch(batch, hidden)
        B, T = H.shape[:2]
        logits = self.head(H)
        if self.onset_input is not None:
            logits = logits + self.onset_input(hidden["onset"].detach())
        logits = logits.view(B, T * self.cfg.upsample, self.vocab_size)  # slot s = frame s // u
        log_probs = F.log_softmax(logits.float(), dim=-1)  # float32 even under AMP: CTC needs it
        return log_probs, lengths * self.cfg.upsample, lengths, heads

    def forward(self, batch: dict) -> tuple[dict, dict]:
        """(outputs, losses): losses "loss/ctc" and, with the heads, "loss/onset" and "loss/frame"."""
        log_probs, slot_lengths, lengths, heads = self.emissions(batch)
        outputs = {"log_probs": log_probs, "lengths": slot_lengths, "heads": heads}
        train_log_probs = log_probs
        if self.cfg.align_window > 0 and "ctc_frames" in batch:
            train_log_probs = self.restrict_alignments(log_probs, batch)
        losses = {
            "loss/ctc": F.ctc_loss(
                train_log_probs.transpose(0, 1),
                batch["ctc_tokens"],
                slot_lengths,
                batch["ctc_lengths"],
                blank=self.codec.blank,
                reduction="mean",
                zero_infinity=True,
            )
        }
        losses.update(self.encoder.auxiliary_losses(heads, batch, lengths))
        return outputs, losses

    def restrict_alignments(self, log_probs: torch.Tensor, batch: dict) -> torch.Tensor:
        """log_probs with token c forbidden (-1e4, finite so CTC gradients stay NaN-free) at every
        slot farther than `align_window` encoder frames from all label frames of c in that item.

        Cheap: a scatter of the labels and one max-pool dilation. It does not tie each label to its
        own frame, only to some frame of the same token, which is what removes the latency."""
        B, S, C = log_probs.shape
        u, d, w = self.cfg.upsample, self.enc_cfg.time_downsample, self.cfg.align_window
        T = S // u
        tokens, frames = batch["ctc_tokens"], batch["ctc_frames"]
        valid = (frames >= 0) & (
            torch.arange(tokens.shape[1], device=tokens.device)[None]
            < batch["ctc_lengths"][:, None]
        )
        b, i = valid.nonzero(as_tuple=True)
        labels = torch.zeros(B, C, T, device=log_probs.device)
        labels[b, tokens[b, i], (frames[b, i] // d).clamp(max=T - 1)] = 1.0
        allowed = F.max_pool1d(labels, 2 * w + 1, stride=1, padding=w) > 0  # (B, C, T)
        allowed[:, self.codec.blank] = True
        allowed = allowed.transpose(1, 2).repeat_interleave(u, dim=1)  # (B, S, C)
        return log_probs.masked_fill(~allowed, -1e4)

    @torch.no_grad()
    def infer(self, batch: dict) -> dict:
        """For decoding: log_probs (B, S, C), slot lengths (B,), and head_probs {"onset", "frame"}
        (B, T, P) at feature-frame resolution for the heads the model has."""
        log_probs, slot_lengths, _, heads = self.emissions(batch)
        return {
            "log_probs": log_probs,
            "lengths": slot_lengths,
            "head_probs": self.encoder.head_probs(heads, batch["features"].shape[1]),
        }

    def slot_to_frame(self, slots):
        """Emission slot index → feature frame (int, numpy array or tensor)."""
        return slots // self.cfg.upsample * self.enc_cfg.time_downsample
