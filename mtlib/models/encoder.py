"""The audio encoder both models share: features → CNN blocks → linear → BiLSTM → H (B, T', D).

Two optional heads (Onsets-and-Frames style) read H: an onset head predicts a piano roll of note
onsets and a frame head one of sounding notes. Their losses train the encoder beside CTC or
Seq2Seq; at decoding the onset probabilities refine note onsets and the frame probabilities
decide where each note ends (`mtlib.decode.refine_notes`), for both models alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Initial onset logit: onsets are rare (~1% of frame x pitch cells), so start the head there
# rather than at p = 0.5, which would spend the first steps unlearning a dense roll.
ONSET_BIAS = -4.6  # logit of 0.01
FRAME_BIAS = -2.9  # logit of 0.05: about the share of sounding cells on the demo data


@contextmanager
def own_stream(k: int) -> Iterator[None]:
    """Draw the weights built inside from a seeded stream of their own: stream k starts at the
    global seed + k, and the global stream is left where it was. An optional part (a probe head,
    a stack) built this way leaves every other weight's initialisation, and so the rest of the
    model, as without it. Streams taken: 1 frame head, 2 offset head, 3 onset stack, 4 the CTC head's onset input."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((torch.initial_seed() + k) % 2**63)
        yield


@dataclass
class EncoderConfig:
    """`model.encoder` in params.yaml, plus n_mels and n_pitches that the data decide."""

    n_mels: int = 128
    cnn_channels: tuple[int, ...] = (
        16,
        32,
    )  # one conv-BN-ReLU block each, each halves the mel axis
    # how each CNN block halves the frequency axis: "max" (3x3 conv, then max-pool over 2 bins) or
    # "stride" (the 3x3 conv itself steps 2 bins: a quarter of the CNN's time on CPU, BENCHMARKS.md)
    cnn_pool: str = "max"
    time_downsample: int = 1  # encoder frames are this many feature frames (max-pooled)
    proj_dim: int = 256  # linear from CNN features to the LSTM input (0 = none): halves LSTM cost
    lstm_hidden: int = 192  # per direction: D = 2 * lstm_hidden
    lstm_layers: int = 2
    dropout: float = 0.1
    onset_weight: float = 1.0  # weight of the auxiliary onset piano-roll loss; 0 = no onset head
    # the onset head's own BiLSTM (units per direction) over H, as the onset stack of Onsets and
    # Frames (0 = one linear layer on H); trained with the encoder, as the linear head is
    onset_hidden: int = 0
    # ... reading the normalised input features beside H (needs onset_hidden > 0): a re-struck
    # note is a rise of its partials in the spectrum, while H serves the tokens too
    onset_features: bool = False
    # weight of the frame (note-sounding) piano-roll loss; 0 = no frame head. The dataclass default
    # is 0 so checkpoints written before the frame head existed still load; params.yaml sets it.
    frame_weight: float = 0.0
    # train the frame head on H without letting its loss reach the encoder (a probe of the shared
    # features): on the demo data a jointly trained frame head cost the CTC model 0.07 val note F1
    frame_detach: bool = False
    # the frame head's own BiLSTM (units per direction) over H and the onset probabilities, as the
    # frame stack of Onsets and Frames: a held note's end needs context a linear layer on H lacks;
    # 0 = the frame head is one linear layer on H
    frame_hidden: int = 0
    frame_layers: int = 1  # layers of that BiLSTM
    # the frame head also reads the encoder's input, the normalised features of each frame, beside
    # H: what sounds now is in the spectrum itself, while H is shaped by the model's own loss (CTC
    # tokens mark where notes start and end, not that they still sound)
    frame_features: bool = False
    # weight of an offset head's loss (0 = none): a piano roll of key releases (the frame of each
    # note's end), read from what the frame head reads (its stack's output), trained with it; at
    # decoding a note ends at the first offset peak before the frame head lets it go (Onsets and
    # Frames' offset detector, Hawthorne et al. 2018). Needs the frame head.
    offset_weight: float = 0.0
    n_pitches: int = 88  # rows of the onset piano roll (vocab max_pitch - min_pitch + 1)
    # audio.features hcqt: the bin shift of each harmonic channel (FeatureConfig.harmonic_shifts);
    # () = one input channel, the features as they are
    harmonic_shifts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.cnn_channels = tuple(int(c) for c in self.cnn_channels)  # YAML gives a list
        self.harmonic_shifts = tuple(int(s) for s in self.harmonic_shifts)
        if not self.cnn_channels:
            raise ValueError("model.encoder.cnn_channels: need at least one CNN block")
        if self.onset_features and self.onset_hidden <= 0:
            raise ValueError(
                "model.encoder.onset_features needs model.encoder.onset_hidden > 0 (the onset "
                "stack reads the features)"
            )
        if self.frame_layers < 1:
            raise ValueError(f"model.*.frame_layers must be at least 1, got {self.frame_layers}")
        if self.n_mels >> len(self.cnn_channels) < 1:
            raise ValueError(
                f"model.encoder: {len(self.cnn_channels)} CNN blocks halve n_mels={self.n_mels} "
                "below one bin"
            )
        if self.cnn_pool not in ("max", "stride"):
            raise ValueError(f"model.encoder.cnn_pool must be max or stride, got {self.cnn_pool!r}")
        if self.time_downsample < 1:
            raise ValueError(
                f"model.encoder.time_downsample must be >= 1, got {self.time_downsample}"
            )
        if self.offset_weight > 0 and self.frame_weight <= 0:
            raise ValueError(
                "model: offset_weight > 0 needs the frame head (frame_weight > 0): the offset "
                "head reads the frame head's input"
            )


def harmonic_stack(x: torch.Tensor, shifts: tuple[int, ...]) -> torch.Tensor:
    """(B, T, F) → (B, len(shifts), T, F): channel i is x moved down by shifts[i] bins (bin k of
    channel i = bin k + shifts[i] of x; a negative shift moves up), zero where that falls outside.
    Basic Pitch's harmonic CQT, built from one CQT: a note's partials line up across channels.
    Written here because torchaudio/nnAudio have no harmonic stacking."""
    n = x.shape[-1]
    channels = []
    for s in shifts:
        if s >= n or -s >= n:
            channels.append(torch.zeros_like(x))
        elif s >= 0:
            channels.append(F.pad(x[..., s:], (0, s)))
        else:
            channels.append(F.pad(x[..., : n + s], (-s, 0)))
    return torch.stack(channels, dim=1)


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
        self.frozen = False  # set by freeze(): train() then keeps eval mode
        blocks, in_channels, bins = [], max(1, len(cfg.harmonic_shifts)), cfg.n_mels
        for channels in cfg.cnn_channels:
            # Frequency only is halved: time resolution is the transcription's.
            stride = (1, 2) if cfg.cnn_pool == "stride" else 1
            layers = [
                nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            if cfg.cnn_pool == "max":
                layers.append(nn.MaxPool2d((1, 2)))
            blocks.append(nn.Sequential(*layers))
            in_channels = channels
            # max-pool floors an odd count of bins, a strided conv rounds it up
            bins = bins // 2 if cfg.cnn_pool == "max" else (bins + 1) // 2
        self.blocks = nn.ModuleList(blocks)
        self.cnn_dim = in_channels * bins
        # As in Onsets and Frames, a linear layer shrinks the CNN output (32 ch x 32 bins = 1024 at
        # the defaults) before the BiLSTM, whose input matmul dominates the cost on CPU.
        self.proj = nn.Linear(self.cnn_dim, cfg.proj_dim) if cfg.proj_dim > 0 else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            cfg.proj_dim or self.cnn_dim,
            cfg.lstm_hidden,
            cfg.lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0,
        )
        self.output_dim = 2 * cfg.lstm_hidden
        self.onset_head = self.frame_head = self.frame_stack = self.offset_head = None
        self.onset_stack = None
        if cfg.onset_weight > 0:
            onset_dim = self.output_dim
            if cfg.onset_hidden > 0:
                with own_stream(3):  # the rest of the model starts as without the stack
                    stack_in = onset_dim + (cfg.n_mels if cfg.onset_features else 0)
                    self.onset_stack = nn.LSTM(
                        stack_in, cfg.onset_hidden, batch_first=True, bidirectional=True
                    )
                onset_dim = 2 * cfg.onset_hidden
            self.onset_head = nn.Linear(onset_dim, cfg.n_pitches)
            nn.init.constant_(self.onset_head.bias, ONSET_BIAS)
        if cfg.frame_weight > 0:
            # A detached frame head is a probe: drawn from its own seeded stream, so that adding
            # it leaves every other weight's initialisation (and so the model) unchanged.
            with own_stream(1):
                frame_dim = self.output_dim + (cfg.n_mels if cfg.frame_features else 0)
                if cfg.frame_hidden > 0:
                    stack_in = frame_dim + (cfg.n_pitches if self.onset_head is not None else 0)
                    self.frame_stack = nn.LSTM(
                        stack_in,
                        cfg.frame_hidden,
                        cfg.frame_layers,
                        batch_first=True,
                        bidirectional=True,
                    )
                    frame_dim = 2 * cfg.frame_hidden
                self.frame_head = nn.Linear(frame_dim, cfg.n_pitches)
            nn.init.constant_(self.frame_head.bias, FRAME_BIAS)
            if cfg.offset_weight > 0:
                # its own stream too: adding it leaves the frame head's initialisation unchanged
                with own_stream(2):
                    self.offset_head = nn.Linear(frame_dim, cfg.n_pitches)
                nn.init.constant_(self.offset_head.bias, ONSET_BIAS)

    def freeze(self) -> None:
        """Fix every weight and statistic of the encoder and its heads: no gradients (so no
        backward pass through it), and eval mode (no dropout, BatchNorm's running statistics
        kept) whatever mode the model around it is set to. Used to train a Seq2Seq decoder on the
        CTC model's encoder as it is (`train.seq2seq.encoder_lr_scale: 0`)."""
        self.requires_grad_(False)
        self.frozen = True
        self.train(self.training)

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def probe_parameters(self) -> list[nn.Parameter]:
        """The detached frame head's parameters (its stack's and the offset head's too): trained by
        their own losses alone, so training clips their gradients apart from the rest
        (`mtlib.train.TrainRun.step`)."""
        if self.frame_head is None or not self.cfg.frame_detach:
            return []
        stack = list(self.frame_stack.parameters()) if self.frame_stack is not None else []
        offset = list(self.offset_head.parameters()) if self.offset_head is not None else []
        return stack + list(self.frame_head.parameters()) + offset

    def set_feature_stats(self, mean, std) -> None:
        """Per-mel-bin mean and std of the training features (the checkpoint keeps them)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.cfg.n_mels or std.numel() != self.cfg.n_mels:
            raise ValueError(
                f"feature stats have {mean.numel()}/{std.numel()} bins, the encoder {self.cfg.n_mels}"
            )
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-5))

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.clamp_min(
            1
        )  # an empty item would break packing; it has no targets anyway
        mask = frame_mask(lengths, features.shape[1])
        x = self.normalised(features, mask)
        # (B, C, T, n_mels): time and frequency as the two image axes, one channel per harmonic
        shifts = self.cfg.harmonic_shifts
        x = harmonic_stack(x, shifts) if shifts else x.unsqueeze(1)
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

    def normalised(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Features (B, T, n_mels) standardised per bin, padded frames (mask False) zero."""
        return (features - self.feature_mean) / self.feature_std * mask[..., None]

    def frame_inputs(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The normalised features at encoder frames (B, T', n_mels) for `frame_features`: max over
        each encoder frame's feature frames when time is downsampled; `lengths` in encoder frames."""
        d = self.cfg.time_downsample
        x = features
        if d > 1:
            x = F.max_pool1d(x.transpose(1, 2), d, ceil_mode=True).transpose(1, 2)
        return self.normalised(x, frame_mask(lengths, x.shape[1]))

    def head_logits(
        self,
        H: torch.Tensor,
        lengths: torch.Tensor,
        features: torch.Tensor | None = None,
        hidden: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """{"onset", "frame", "offset"}: (B, T', P) logits per encoder frame, for the heads it has.
        `features` (B, T, n_mels), the encoder's input, is needed with `frame_features` only.
        `hidden`, if given, receives "onset": the onset stack's output (B, T', 2 * onset_hidden)."""
        heads = {}
        inputs = None  # frame_inputs, computed once for the heads that read them

        def beside_features(x: torch.Tensor, key: str) -> torch.Tensor:
            nonlocal inputs
            if features is None:
                head = key.split("_")[0]
                raise ValueError(f"the {head} head reads the features ({key}): pass them")
            if inputs is None:
                inputs = self.frame_inputs(features, lengths)
            return torch.cat([x, inputs.to(x.dtype)], dim=-1)

        if self.onset_head is not None:
            x = H
            if self.onset_stack is not None:
                if self.cfg.onset_features:
                    x = beside_features(x, "onset_features")
                x = self.run_stack(self.onset_stack, x, lengths)
                if hidden is not None:
                    hidden["onset"] = x
            heads["onset"] = self.onset_head(x)
        if self.frame_head is not None:
            x = H.detach() if self.cfg.frame_detach else H
            if self.cfg.frame_features:
                x = beside_features(x, "frame_features")
            if self.frame_stack is not None:
                x = self.stack_frames(x, heads.get("onset"), lengths)
            heads["frame"] = self.frame_head(x)
            if self.offset_head is not None:
                heads["offset"] = self.offset_head(x)
        return heads

    def stack_frames(
        self, x: torch.Tensor, onset_logits: torch.Tensor | None, lengths: torch.Tensor
    ) -> torch.Tensor:
        """The frame stack: a BiLSTM over H and the onset probabilities (gradient stopped, as in
        Onsets and Frames: the frame loss never trains the onset head), packed by length so an
        item's output does not depend on its batch's padding."""
        if onset_logits is not None:
            x = torch.cat([x, torch.sigmoid(onset_logits.detach()).to(x.dtype)], dim=-1)
        return self.run_stack(self.frame_stack, x, lengths)

    @staticmethod
    def run_stack(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """A head's BiLSTM over x (B, T', F), packed by length so an item's output does not
        depend on its batch's padding."""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]

    def roll_loss(
        self, logits: torch.Tensor, roll: torch.Tensor, lengths: torch.Tensor, weight: float
    ) -> torch.Tensor:
        """`weight` x BCE of a head against a piano roll (B, T, P), over valid frames only.

        With time downsampling a target frame is 1 if any of its feature frames is."""
        d = self.cfg.time_downsample
        if d > 1:
            roll = F.max_pool1d(roll.transpose(1, 2), d, ceil_mode=True).transpose(1, 2)
        mask = frame_mask(lengths, logits.shape[1])
        bce = F.binary_cross_entropy_with_logits(logits.float(), roll.float(), reduction="none")
        return weight * bce[mask].mean()

    def head_probs(self, heads: dict[str, torch.Tensor], n_frames: int) -> dict[str, torch.Tensor]:
        """Each head's probabilities at feature-frame resolution (B, n_frames, P), for decoding."""
        d = self.cfg.time_downsample
        return {
            name: torch.sigmoid(x.float()).repeat_interleave(d, dim=1)[:, :n_frames]
            for name, x in heads.items()
        }

    def encode_batch(
        self, batch: dict, hidden: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(H, lengths', head logits {"onset", "frame", "offset"}: those the encoder has) for a
        collated batch; `hidden` as in `head_logits`."""
        H, lengths = self(batch["features"], batch["feature_lengths"])
        return H, lengths, self.head_logits(H, lengths, batch["features"], hidden)

    def auxiliary_losses(
        self, heads: dict[str, torch.Tensor], batch: dict, lengths: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """ "loss/onset", "loss/frame" and "loss/offset" for the heads the encoder has and the rolls
        the batch has ("onsets", "frame_roll", "offset_roll", built by `mtlib.dataset.collate`)."""
        losses = {}
        if "onset" in heads and "onsets" in batch:
            losses["loss/onset"] = self.roll_loss(
                heads["onset"], batch["onsets"], lengths, self.cfg.onset_weight
            )
        if "frame" in heads and "frame_roll" in batch:
            losses["loss/frame"] = self.roll_loss(
                heads["frame"], batch["frame_roll"], lengths, self.cfg.frame_weight
            )
        if "offset" in heads and "offset_roll" in batch:
            losses["loss/offset"] = self.roll_loss(
                heads["offset"], batch["offset_roll"], lengths, self.cfg.offset_weight
            )
        return losses
