"""The training loop shared by train_ctc and train_seq2seq: one visible function, `train`.

AdamW with linear warm-up and cosine decay, gradient clipping, seeded determinism on CPU, AMP on
CUDA, length-bucketed batches, a progress bar, per-epoch dvclive logs (train loss per key, val
loss, val note F1 on whole val tracks with greedy decoding), the best checkpoint by val note F1,
and resume from a persisted last checkpoint after an interruption.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlib import distributed, portable
from mtlib.decode import DecodeConfig
from mtlib.pipeline import (
    TrackRef,
    augment_config,
    load_tracks,
    load_vocab,
    model_config,
    reference_notes,
    score_tracks,
    train_config,
    validation_decode_config,
)

if TYPE_CHECKING:
    import torch


@dataclass
class TrainConfig:
    """train.common.* merged with train.<kind>.* (the kind's keys win)."""

    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    epochs: int = 30
    # An opt-in guard, off by default: a wall-clock limit makes the result depend on the machine's
    # speed (the same params would give another model on a slower machine), so training runs a
    # fixed number of epochs and this only stops a run that would take far too long, loudly.
    max_minutes: float = 0.0
    num_workers: int = 0
    threads: int = 0  # torch CPU threads (0 = torch's default)
    # CPU training on one code path on every x86-64 CPU with AVX2 (mtlib.portable): the same
    # params then give the same model on another vendor's CPU too, at about 4x the time.
    portable_math: bool = False
    val_every: int = 1
    # Seq2Seq only
    ss_max: float = 0.0
    ss_slope: float = 0.0
    class_weights: float = 0.0  # exponent of inverse token frequency (0 = no class weights)
    # Start the encoder from another checkpoint's (the CTC model's: one shared encoder), and train
    # it at lr * encoder_lr_scale (0: frozen, its heads too). "" = train the encoder from scratch.
    init_encoder: str = ""
    encoder_lr_scale: float = 1.0
    # processes (one per GPU; CPU processes for tests) sharing each global batch of batch_size:
    # above 1 the train stage runs itself under torchrun with DDP (mtlib.distributed)
    nproc: int = 1


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "train.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    import torch

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to 5% at `total_steps`."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def param_groups(model, lr: float, encoder_lr_scale: float) -> list[dict[str, Any]]:
    """AdamW groups: the encoder at lr * encoder_lr_scale, everything else at lr."""
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    ids = {id(p) for p in encoder}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": encoder, "lr": lr * encoder_lr_scale}, {"params": rest, "lr": lr}]
    return [g for g in groups if g["params"]]  # a frozen encoder has none


def init_encoder_from(model, path: str | Path) -> None:
    """Copy the encoder (weights, onset head, feature stats) of the checkpoint at `path` into
    `model`; ValueError naming the file if its encoder config differs from the model's.

    Only the per-model head fields (`PER_MODEL_ENCODER_KEYS`: the frame head) may differ: a frame
    head the source lacks, or has in another shape (another `frame_hidden`, `frame_layers` or `frame_features`), keeps its fresh
    initialisation; one the model lacks is not copied."""

    import torch

    from mtlib.models import PER_MODEL_ENCODER_KEYS, load_checkpoint

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: checkpoint for train.*.init_encoder not found (train that model first)"
        )
    source, _ = load_checkpoint(path)
    mine, theirs = asdict(model.enc_cfg), asdict(source.enc_cfg)
    differ = [k for k in mine if mine.get(k) != theirs.get(k) and k not in PER_MODEL_ENCODER_KEYS]
    if differ:
        diff = ", ".join(f"{k}: {theirs.get(k)} there vs {mine.get(k)} here" for k in differ)
        raise ValueError(
            f"{path}: its encoder differs from this model's ({diff}); cannot initialise from it"
        )
    own = model.encoder.state_dict()
    frame_keys = ("frame_head.", "frame_stack.", "offset_head.")
    # the frame head's shape: a checkpoint from before a key gets the dataclass default for it
    same_frame_head = all(
        mine[k] == theirs[k] for k in ("frame_hidden", "frame_layers", "frame_features")
    )
    shared = {
        k: v
        for k, v in source.encoder.state_dict().items()
        if k in own and (same_frame_head or not k.startswith(frame_keys))
    }
    if any(
        not k.startswith(frame_keys) for k in own.keys() - shared.keys()
    ):  # cannot happen: configs agree
        raise ValueError(f"{path}: encoder weights {sorted(own.keys() - shared.keys())} missing")
    with torch.no_grad():
        model.encoder.load_state_dict(shared, strict=False)


def token_class_weights(token_lists, vocab, power: float) -> torch.Tensor:
    """Inverse-frequency class weights freq^-power over training tokens of a Vocabulary,
    normalised to mean 1 over the tokens seen; unseen classes get the largest seen weight.
    Counts include EOS; PAD, which the loss ignores, counts as unseen."""
    import torch

    counts = np.zeros(vocab.size, dtype=np.float64)
    for toks in token_lists:
        np.add.at(counts, np.asarray(toks, dtype=np.int64), 1)
    counts[vocab.PAD] = 0
    seen = counts > 0
    w = np.ones(vocab.size)
    if power > 0 and seen.any():
        w[seen] = counts[seen] ** (-power)
        w[seen] /= (w[seen] * counts[seen]).sum() / counts[seen].sum()
        w[~seen] = w[seen].max()
    return torch.tensor(w, dtype=torch.float32)


def run_signature(*parts: Any) -> str:
    """A hash of everything that defines a training run: a resume checkpoint is used only if its
    signature matches, so a stale one from other params or data is never picked up."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class TrainResult:
    best_epoch: int
    best_f1: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False  # the max_minutes guard ended training before cfg.epochs


def move(batch: dict, device) -> dict:
    return {
        k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()
    }


def train(
    kind: str,
    model,
    cfg: TrainConfig,
    train_loader_fn: Callable[[int], Any],
    val_loader,
    validate_f1: Callable[[Any], dict[str, float]],
    best_path: str | Path,
    resume_path: str | Path,
    signature: str,
    extra: dict[str, Any],
    live_dir: str | Path | None = None,
    class_weights=None,
) -> TrainResult:
    """Train `model` ('ctc' or 'seq2seq') and keep the best checkpoint (by val note F1) at `best_path`.
    With `cfg.portable_math` on the CPU, in the arithmetic of `mtlib.portable` (checked first).

    train_loader_fn(epoch) returns that epoch's loader (the bucket sampler reshuffles per epoch);
    validate_f1(model) returns {"val/note_f1": ..., ...} from whole-track greedy transcription.
    `resume_path` holds the last epoch's full state; it is removed when training completes."""
    import torch

    portable_cpu = portable_math_on_cpu(cfg)
    if cfg.portable_math and not portable_cpu:
        print("[train] portable_math applies to CPU training only: ignored on CUDA", flush=True)
    with portable.arithmetic(portable_cpu, cfg.threads):
        best_path, resume_path = Path(best_path), Path(resume_path)
        # The best checkpoint lives beside the resume state until training ends (DVC removes a
        # stage's outputs before rerunning it, so an interrupted run must not keep its best model
        # there).
        best_tmp = resume_path.with_name(resume_path.stem + ".best.pt")
        resume_path.parent.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        # one process unless torchrun started several (train.common.nproc)
        w = distributed.init(device)
        seed_everything(cfg.seed)
        model.to(device)
        if class_weights is not None:
            class_weights = class_weights.to(device)
        run = TrainRun(
            model, cfg, device, len(train_loader_fn(0)), distributed.wrap(model, device, w)
        )
        run.resume(resume_path, signature, kind)
        live = open_live(live_dir if w.main else None, run.resumed)

        t_start = time.time() - run.elapsed
        epoch, stopped_early = run.start_epoch - 1, False
        for epoch in range(run.start_epoch, cfg.epochs + 1):
            out_of_time = cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes
            if distributed.agree(bool(out_of_time), w):
                stopped_early = True
                warn_stopped_early(kind, epoch - 1, cfg)
                epoch -= 1
                break
            ss_prob = min(cfg.ss_max, cfg.ss_slope * (epoch - 1)) if kind == "seq2seq" else 0.0
            title = f"[{kind}] epoch {epoch}/{cfg.epochs}"
            row = run.train_epoch(train_loader_fn(epoch), title, ss_prob, class_weights, w.main)
            if not w.main:
                continue  # rank 0 alone validates, logs and writes
            if kind == "seq2seq":
                row["ss_prob"] = ss_prob
            if epoch % cfg.val_every == 0 or epoch == cfg.epochs:
                row.update(evaluate_loss(model, val_loader, device, kind, class_weights))
                row.update(validate_f1(model))
            row["epoch"] = epoch
            row["minutes"] = (time.time() - t_start) / 60
            run.record(kind, row, best_tmp, extra, live)
            run.save_resume(resume_path, signature, epoch, time.time() - t_start)
        if w.main:
            if live is not None:
                live.end()
            run.keep_best(best_tmp, best_path, extra, epoch)
            if resume_path.exists():
                resume_path.unlink()
        distributed.finish(w)
        return TrainResult(run.best_epoch, run.best_f1, epoch, run.history, stopped_early)


def portable_math_on_cpu(cfg: TrainConfig) -> bool:
    """Whether `cfg.portable_math` applies: CPU training only (mtlib.portable)."""
    return cfg.portable_math and resolve_device(cfg.device).type == "cpu"


def open_live(live_dir: str | Path | None, resumed: bool):
    """A dvclive logger writing to `live_dir` (None: no logging), continuing a resumed run."""
    if live_dir is None:
        return None
    from dvclive import Live

    return Live(str(live_dir), resume=resumed, save_dvc_exp=False, dvcyaml=False)


class TrainRun:
    """The state of one training run that an interrupted `dvc repro` resumes from: the model,
    AdamW with its warm-up and decay schedule, the AMP gradient scaler (active on CUDA only),
    the epoch reached, the best val note F1 so far and the per-epoch history."""

    def __init__(self, model, cfg: TrainConfig, device, steps_per_epoch: int, net=None):
        import torch

        self.model, self.cfg, self.device = model, cfg, device
        self.net = model if net is None else net  # what training calls: DDP around model, or it
        groups = param_groups(model, cfg.lr, cfg.encoder_lr_scale)
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        total_steps = cfg.epochs * steps_per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda(cfg.warmup_steps, total_steps)
        )
        self.use_amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.start_epoch, self.best_f1, self.best_epoch = 1, -1.0, 0
        self.history: list[dict] = []
        self.elapsed, self.resumed = 0.0, False

    def record(self, kind: str, row: dict, best_tmp: Path, extra: dict, live) -> None:
        """One epoch's row: printed, logged to dvclive, and the model saved to `best_tmp` when
        its val note F1 is the best so far."""
        from mtlib.models import save_checkpoint

        epoch = row["epoch"]
        self.history.append(row)
        items = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
        print(f"[{kind}] epoch {epoch}: {items}")
        if row.get("val/note_f1", -1.0) > self.best_f1:
            self.best_f1, self.best_epoch = row["val/note_f1"], epoch
            # no wall clock in the file: the same params give the same bytes on any machine
            val = {k: v for k, v in row.items() if k != "minutes"}
            save_checkpoint(best_tmp, self.model, {**extra, "epoch": epoch, "val": val})
        if live is not None:
            for k, v in row.items():
                if k != "epoch":
                    live.log_metric(k, v)
            live.next_step()

    def keep_best(self, best_tmp: Path, best_path: Path, extra: dict, epoch: int) -> None:
        """Move the best checkpoint to `best_path` (the model as it is if no validation ran)."""
        from mtlib.models import save_checkpoint

        if not best_tmp.exists():
            save_checkpoint(best_tmp, self.model, {**extra, "epoch": epoch, "val": {}})
        best_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(best_tmp, best_path)

    def resume(self, path: Path, signature: str, kind: str) -> None:
        """Continue from the state at `path` if it belongs to this configuration (`signature`)."""
        import torch

        if not path.exists():
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("signature") != signature:
            print(f"[{kind}] ignoring {path}: it belongs to another configuration")
            return
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        self.best_f1, self.best_epoch = state["best_f1"], state["best_epoch"]
        self.history, self.elapsed, self.resumed = state["history"], state["elapsed"], True
        print(f"[{kind}] resuming from {path} at epoch {self.start_epoch}")

    def save_resume(self, path: Path, signature: str, epoch: int, elapsed: float) -> None:
        """Everything `resume` needs after `epoch`, written atomically."""
        import torch

        from mtlib.io import atomic_path

        state = {
            "signature": signature,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "best_f1": self.best_f1,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "elapsed": elapsed,
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def train_epoch(
        self, loader, title: str, ss_prob: float = 0.0, class_weights=None, show: bool = True
    ) -> dict[str, float]:
        """One pass over `loader` with a progress bar (`show`): {"train/<loss>": mean, "lr": ...}.
        Seq2Seq batches get the scheduled-sampling probability and class weights. Under DDP the
        losses are this process's share's."""
        import torch
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        model, device = self.model, self.device
        model.train()
        sums: dict[str, float] = {}
        n_batches = 0
        columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(
            TextColumn(title),
            *columns,
            TextColumn("{task.fields[loss]}"),
            disable=None if show else True,
        ) as bar:
            task = bar.add_task("train", total=len(loader), loss="")
            for batch in loader:
                batch = move(batch, device)
                kwargs = (
                    {"ss_prob": ss_prob, "class_weights": class_weights}
                    if model.kind == "seq2seq"
                    else {}
                )
                with torch.autocast(device.type, dtype=torch.float16, enabled=self.use_amp):
                    _, losses = self.net(batch, **kwargs)
                loss = sum(losses.values())
                self.step(loss)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                sums["loss/total"] = sums.get("loss/total", 0.0) + float(loss.detach())
                n_batches += 1
                bar.update(task, advance=1, loss=f"loss {sums['loss/total'] / n_batches:.3f}")
        row = {f"train/{k}": v / max(1, n_batches) for k, v in sums.items()}
        row["lr"] = self.sched.get_last_lr()[0]
        return row

    def step(self, loss) -> None:
        """One optimiser step on `loss`: AMP scaling, gradient clipping, the schedule."""
        import torch

        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        # A detached head's gradients are clipped on their own: in the shared norm they would
        # change how the rest is clipped, so adding the probe would change the model it probes.
        probe = self.model.encoder.probe_parameters()
        probe_ids = {id(p) for p in probe}
        main = [p for p in self.model.parameters() if id(p) not in probe_ids]
        torch.nn.utils.clip_grad_norm_(main, self.cfg.grad_clip)
        if probe:
            torch.nn.utils.clip_grad_norm_(probe, self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()


def warn_stopped_early(kind: str, epochs_done: int, cfg: TrainConfig) -> None:
    """Say, as loudly as a terminal allows, that the time guard cut training short."""
    import sys
    import warnings

    text = (
        f"[{kind}] TRAINING STOPPED EARLY after {epochs_done} of {cfg.epochs} epochs: the time guard "
        f"max_minutes={cfg.max_minutes:g} was reached. This model depends on the machine's speed and will "
        f"not match another machine's; set train.{kind}.max_minutes: 0 to train every epoch."
    )
    print("\n" + "!" * 100 + "\n" + text + "\n" + "!" * 100, file=sys.stderr, flush=True)
    warnings.warn(text, TrainingStoppedEarly, stacklevel=2)


class TrainingStoppedEarly(UserWarning):
    """train.*.max_minutes stopped training before train.*.epochs: the result depends on the machine."""


def evaluate_loss(model, loader, device, kind: str, class_weights=None) -> dict[str, float]:
    """Mean teacher-forced losses over the val loader (`val/loss/...`)."""
    import torch

    model.eval()
    sums: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for batch in loader:
            batch = move(batch, device)
            if kind == "seq2seq":
                _, losses = model(batch, ss_prob=0.0, class_weights=class_weights)
            else:
                _, losses = model(batch)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            sums["loss/total"] = sums.get("loss/total", 0.0) + float(sum(losses.values()))
            n += 1
    model.train()
    return {f"val/{k}": v / max(1, n) for k, v in sums.items()}


# --------------------------------------------------------------------------- the train_ctc / train_seq2seq stage


def train_stage(
    kind: str, params_path, manifest_path, features_dir, tokens_dir, out, live_dir, resume_path
) -> None:
    """Build loaders and the model from the data and params, train, keep the best checkpoint.

    Only the train loader augments (`train.augment`, `mtlib.augment.AugmentedDataset`); the val
    loader, validation on whole tracks, the decode sweep and evaluation see unaugmented features."""
    import pandas as pd

    from mtlib.dataset import SegmentDataset, feature_stats_path
    from mtlib.params import load_params
    from mtlib.segments import read_feature_config

    params = load_params(params_path)
    cfg, augment_cfg, model_cfg = (
        train_config(params, kind),
        augment_config(params),
        model_config(params, kind),
    )
    argv = ["--params", params_path, "--manifest", manifest_path, "--features", features_dir]
    argv += ["--tokens", tokens_dir, "--out", out, "--live", live_dir, "--resume", resume_path]
    # portable_math first, so that torchrun's processes (nproc > 1) inherit its environment
    if portable_math_on_cpu(cfg) and portable.relaunch(
        f"stages.train_{kind}", [str(a) for a in argv]
    ):
        return
    if distributed.launch(cfg.nproc, f"stages.train_{kind}", [str(a) for a in argv]):
        return
    feature_cfg, seg_frames = read_feature_config(features_dir)
    vocab = load_vocab(tokens_dir)
    stats_path = feature_stats_path(manifest_path)
    manifest = pd.read_parquet(manifest_path)
    train_set, val_set = SegmentDataset(manifest, "train"), SegmentDataset(manifest, "val")
    if len(train_set) == 0:
        raise ValueError(f"{manifest_path}: no train segments")
    model, init_digest = fresh_model(kind, cfg, model_cfg, feature_cfg, vocab, stats_path)
    train_loader, val_loader = segment_loaders(
        kind, train_set, val_set, vocab, cfg, augment_cfg, augment_geometry(feature_cfg)
    )
    val_decoding = validation_decode_config(params)
    val_tracks = load_tracks(manifest_path, features_dir, "val")
    validate = validation(feature_cfg, seg_frames, vocab, val_decoding, val_tracks, val_loader)
    class_weights = None
    if kind == "seq2seq" and cfg.class_weights > 0:
        class_weights = token_class_weights(train_set.tokens, vocab, cfg.class_weights)
    # the process count changes how a batch is computed, not what is trained: neither the resume
    # signature nor the checkpoint records it, so a run resumes with another count
    train_record = {k: v for k, v in asdict(cfg).items() if k != "nproc"}
    describe = (train_record, augment_cfg.describe(), asdict(val_decoding))
    digests = (file_digest(manifest_path), file_digest(stats_path), init_digest)
    signature = run_signature(kind, model_cfg, describe[0], *digests, *describe[1:])
    extra = {
        "kind": kind,
        "features": feature_cfg.describe(),
        "seg_frames": seg_frames,
        "vocab": vocab.config(),
        "train": describe[0],
        "augment": describe[1],
        "decode": describe[2],  # the decoding it was validated with: `mt transcribe`'s fallback
    }
    loaders = (train_loader, val_loader, validate)
    result = train(
        kind, model, cfg, *loaders, out, resume_path, signature, extra, live_dir, class_weights
    )
    if not distributed.world().main:
        return
    print(
        f"[{kind}] best val note F1 {result.best_f1:.4f} at epoch {result.best_epoch} "
        f"of {result.epochs_run} → {out}"
    )


def fresh_model(kind: str, cfg: TrainConfig, model_cfg: dict, feature_cfg, vocab, stats_path):
    """(the model to train, SHA-256 of the checkpoint its encoder starts from or ""): built from
    params and the data (feature bins, harmonic shifts, vocabulary, feature stats) under the
    training seed, its encoder from `cfg.init_encoder` when set."""
    import torch

    from mtlib.dataset import load_feature_stats
    from mtlib.models import build_model, feature_keys

    if cfg.encoder_lr_scale == 0 and not cfg.init_encoder:
        raise ValueError(
            f"train.{kind}.encoder_lr_scale 0 freezes the encoder: it needs "
            f"train.{kind}.init_encoder (a trained checkpoint), not a random encoder"
        )
    seed_everything(cfg.seed)
    model = build_model(kind, {**model_cfg, **feature_keys(feature_cfg)}, vocab)
    mean, std = load_feature_stats(stats_path)
    model.set_feature_stats(torch.as_tensor(mean), torch.as_tensor(std))
    if not cfg.init_encoder:
        return model, ""
    init_encoder_from(model, cfg.init_encoder)
    frozen = ""
    if cfg.encoder_lr_scale == 0:
        model.encoder.freeze()
        frozen = " and frozen"
    print(f"[{kind}] encoder initialised from {cfg.init_encoder}{frozen}")
    return model, file_digest(cfg.init_encoder)


def augment_geometry(feature_cfg) -> tuple[int, float]:
    """`segment_loaders`' geometry for features of `feature_cfg`: bins per semitone (0 when the
    features are not constant-Q: no pitch shift) and the frame hop in seconds."""
    bins_per_semitone = feature_cfg.bins_per_semitone if feature_cfg.is_cqt else 0
    return bins_per_semitone, feature_cfg.hop_length / feature_cfg.sample_rate


def segment_loaders(
    kind: str, train_set, val_set, vocab, cfg, augment_cfg, geometry: tuple[int, float] = (0, 0.0)
):
    """(train_loader(epoch), val loader): batches bucketed by length (tokens for Seq2Seq, frames
    for CTC); the train set augmented with draws seeded per (seed, epoch, item). `geometry`:
    the features' bins per semitone (the pitch shift's axis, 0 = none) and frame hop in seconds
    (the reverberation's time scale)."""
    import functools

    import torch

    from mtlib.augment import AugmentedDataset
    from mtlib.dataset import BucketBatchSampler, collate

    col = functools.partial(collate, vocab=vocab)
    length_key = "n_tokens" if kind == "seq2seq" else "n_frames"
    sampler = BucketBatchSampler(
        train_set.lengths(length_key), cfg.batch_size, shuffle=True, seed=cfg.seed
    )
    if distributed.world().size > 1:  # this process's share of each global batch
        sampler = distributed.ShardedBatches(sampler, distributed.world())
    augmented = AugmentedDataset(train_set, augment_cfg, cfg.seed, vocab, *geometry)

    def train_loader(epoch: int):
        sampler.set_epoch(epoch)
        augmented.set_epoch(epoch)  # before the DataLoader copies the dataset into its workers
        return torch.utils.data.DataLoader(
            augmented, batch_sampler=sampler, collate_fn=col, num_workers=cfg.num_workers
        )

    val_sampler = BucketBatchSampler(val_set.lengths(length_key), cfg.batch_size, shuffle=False)
    val_loader = torch.utils.data.DataLoader(val_set, batch_sampler=val_sampler, collate_fn=col)
    return train_loader, val_loader


def validation(
    feature_cfg,
    seg_frames: int,
    vocab,
    val_decoding: DecodeConfig,
    tracks: Sequence[TrackRef],
    val_loader,
):
    """validate(model) → {"val/note_f1": ..., ...}: whole val tracks transcribed as evaluation
    transcribes them (`score_tracks` with a Transcriber decoding as `train.validate` says); for
    Seq2Seq also without the grammar (what the constraints rescue) and teacher-forced token accuracy."""
    from mtlib.transcriber import Transcriber

    refs = {t.id: reference_notes(t, vocab) for t in tracks}

    def validate(model) -> dict[str, float]:
        transcriber = Transcriber(
            model, feature_cfg, seg_frames, vocab, val_decoding, "train.validate"
        )
        out = {f"val/{k}": v for k, v in score_tracks(transcriber, tracks, refs).items()}
        if model.kind == "seq2seq":
            r = score_tracks(transcriber.with_decoding(s2s_decoder="greedy"), tracks, refs)
            out.update({f"val/{k}_plain": v for k, v in r.items()})
            out["val/token_acc_tf"] = teacher_forced_accuracy(model, val_loader)
        return {k.replace("val/note/", "val/note_"): v for k, v in out.items()}

    return validate


def teacher_forced_accuracy(model, loader) -> float:
    """Next-token accuracy with gold history (what the teacher-forced loss sees), ignoring PAD."""
    import torch

    from mtlib.train import move

    model.eval()
    device = next(model.parameters()).device
    right = total = 0
    with torch.no_grad():
        for batch in loader:
            batch = move(batch, device)
            outputs, _ = model(batch)
            pred = outputs["logits"].argmax(-1)
            gold = batch["tokens"]
            keep = gold != model.vocab.PAD
            right += int((pred[keep] == gold[keep]).sum())
            total += int(keep.sum())
    model.train()
    return right / max(1, total)
