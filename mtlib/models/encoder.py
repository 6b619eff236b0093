"""The audio encoder both models share: log-mel → CNN blocks → linear → BiLSTM → H (B, T', D).

An optional onset head (Onsets-and-Frames style) predicts a piano roll of note onsets from H;
its loss trains the encoder beside CTC or Seq2Seq and its probabilities can refine CTC times.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Initial onset logit: onsets are rare (~1% of frame x pitch cells), so start the head there
# rather than at p = 0.5, which would spend the first steps unlearning a dense roll.
ONSET_BIAS = -4.6  # logit of 0.01


@dataclass
class EncoderConfig:
    """`model.encoder` in params.yaml, plus n_mels and n_pitches that the data decide."""

    n_mels: int = 128
    cnn_channels: tuple[int, ...] = (16, 32)  # one conv-BN-ReLU block each, each halves the mel axis
    time_downsample: int = 1  # encoder frames are this many feature frames (max-pooled)
    proj_dim: int = 256  # linear from CNN features to the LSTM input (0 = none): halves LSTM cost
    lstm_hidden: int = 192  # per direction: D = 2 * lstm_hidden
    lstm_layers: int = 2
    dropout: float = 0.1
    onset_weight: float = 1.0  # weight of the auxiliary onset piano-roll loss; 0 = no onset head
    n_pitches: int = 88  # rows of the onset piano roll (vocab max_pitch - min_pitch + 1)

    def __post_init__(self) -> None:
        self.cnn_channels = tuple(int(c) for c in self.cnn_channels)  # YAML gives a list
        if not self.cnn_channels:
            raise ValueError("model.encoder.cnn_channels: need at least one CNN block")
        if self.n_mels >> len(self.cnn_channels) < 1:
            raise ValueError(f"model.encoder: {len(self.cnn_channels)} CNN blocks halve n_mels={self.n_mels} "
                             "below one bin")
        if self.time_downsample < 1:
            raise ValueError(f"model.encoder.time_downsample must be >= 1, got {self.time_downsample}")


def frame_mask(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """(B, n_frames) bool, True on the first lengths[b] frames of item b."""
    return torch.arange(n_frames, device=lengths.device)[None, :] < lengths[:, None]


def downsampled_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Encoder frames per item after ceil-mode pooling by `factor` over time."""
    return torch.div(lengths + factor - 1, factor, rounding_mode="floor")


class Encoder(nn.Module):
    """features (B, T, n_mels), lengths (B,) → H (B, T', 2*lstm_hidden), lengths' (B,).

    Features are normalised per mel bin with the `feature_mean`/`feature_std` buffers (set from
    the training data, saved with the weights). Padded frames are zeroed after every block, so
    an item's output does not depend on how much padding its batch has."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feature_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("feature_std", torch.ones(cfg.n_mels))
        blocks, in_channels = [], 1
        for channels in cfg.cnn_channels:
            blocks.append(nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d((1, 2)),  # pool frequency only: time resolution is the transcription's
            ))
            in_channels = channels
        self.blocks = nn.ModuleList(blocks)
        self.cnn_dim = in_channels * (cfg.n_mels >> len(cfg.cnn_channels))
        # As in Onsets and Frames, a linear layer shrinks the CNN output (32 ch x 32 bins = 1024 at
        # the defaults) before the BiLSTM, whose input matmul dominates the cost on CPU.
        self.proj = nn.Linear(self.cnn_dim, cfg.proj_dim) if cfg.proj_dim > 0 else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(cfg.proj_dim or self.cnn_dim, cfg.lstm_hidden, cfg.lstm_layers, batch_first=True,
                            bidirectional=True, dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)
        self.output_dim = 2 * cfg.lstm_hidden
        self.onset_head = None
        if cfg.onset_weight > 0:
            self.onset_head = nn.Linear(self.output_dim, cfg.n_pitches)
            nn.init.constant_(self.onset_head.bias, ONSET_BIAS)

    def set_feature_stats(self, mean, std) -> None:
        """Per-mel-bin mean and std of the training features (the checkpoint keeps them)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.cfg.n_mels or std.numel() != self.cfg.n_mels:
            raise ValueError(f"feature stats have {mean.numel()}/{std.numel()} bins, the encoder {self.cfg.n_mels}")
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-5))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.clamp_min(1)  # an empty item would break packing; it has no targets anyway
        mask = frame_mask(lengths, features.shape[1])
        x = (features - self.feature_mean) / self.feature_std * mask[..., None]
        x = x.unsqueeze(1)  # (B, 1, T, n_mels): time and frequency as the two image axes
        d = self.cfg.time_downsample
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 0 and d > 1:
                x = F.max_pool2d(x, (d, 1), ceil_mode=True)
                lengths = downsampled_lengths(lengths, d)
                mask = frame_mask(lengths, x.shape[2])
            x = x * mask[:, None, :, None]
        x = self.dropout(self.proj(x.permute(0, 2, 1, 3).flatten(2)))  # (B, T', proj_dim)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        H, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        return H, lengths

    def onset_logits(self, H: torch.Tensor) -> torch.Tensor | None:
        """(B, T', n_pitches) onset logits per encoder frame, or None without an onset head."""
        return None if self.onset_head is None else self.onset_head(H)

    def onset_loss(self, onset_logits: torch.Tensor, onsets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Weighted BCE of the onset head against the onset roll (B, T, P), over valid frames only.

        With time downsampling a target frame is 1 if any of its feature frames holds an onset."""
        d = self.cfg.time_downsample
        if d > 1:
            onsets = F.max_pool1d(onsets.transpose(1, 2), d, ceil_mode=True).transpose(1, 2)
        mask = frame_mask(lengths, onset_logits.shape[1])
        bce = F.binary_cross_entropy_with_logits(onset_logits.float(), onsets.float(), reduction="none")
        return self.cfg.onset_weight * bce[mask].mean()

    def onset_probs(self, onset_logits: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Onset probabilities at feature-frame resolution (B, n_frames, P), for decoding."""
        probs = torch.sigmoid(onset_logits.float())
        return probs.repeat_interleave(self.cfg.time_downsample, dim=1)[:, :n_frames]

    def encode_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(H, lengths', onset logits or None) for a collated batch."""
        H, lengths = self(batch["features"], batch["feature_lengths"])
        return H, lengths, self.onset_logits(H)

    def auxiliary_losses(self, onset_logits, batch: dict, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss/onset": ...} when there is an onset head and the batch has an onset roll."""
        if onset_logits is None or "onsets" not in batch:
            return {}
        return {"loss/onset": self.onset_loss(onset_logits, batch["onsets"], lengths)}
