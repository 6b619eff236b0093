"""End-to-end: the real DVC pipeline on a tiny configuration, in a temporary copy of the repo.

One module-scoped run (seconds of demo audio, one epoch per model) is shared by the checks:
the metrics files it writes, which stages a param change reruns, and `dvc exp run -S`."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mtlib.sweep import OFFSET_KEYS, OFFSET_TAIL_KEYS, acting_offsets

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

TINY = {
    "demo": {"train_minutes": 0.4, "test_minutes": 0.15, "max_seconds": 9.0},
    "segment": {"workers": 1},
    # one val track drawn over all three train-folder tracks, not per ensemble: it leaves 10 train
    # segments (batches of 4, 4, 2), so two processes share every batch of 4 evenly, as the DDP
    # test below needs; the stratified draw would leave 9 (4, 4, 1: a step one process skips)
    "split": {"stratify": ""},
    "train": {
        "common": {"batch_size": 4, "threads": 1},
        "ctc": {"epochs": 1, "max_minutes": 0.0},
        "seq2seq": {"epochs": 1, "max_minutes": 0.0},
    },
    "model": {
        "encoder": {"lstm_hidden": 32, "cnn_channels": [4, 8]},
        "seq2seq": {"decoder_hidden": 32, "embed_dim": 16, "attention_dim": 16},
    },
    "decode": {"max_len": 64},
    "eval": {"pianorolls": 1},
}

METRIC_KEYS = {
    "note/precision",
    "note/recall",
    "note/f1",
    "note_offset/f1",
    "frame/f1",
    "ter",
    "token_f1",
    "onset_f1@2frames",
    "onset_f1@3frames",
    "tracks",
}


def deep_update(d: dict, u: dict) -> dict:
    for k, v in u.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            deep_update(d[k], v)
        else:
            d[k] = v
    return d


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
        )
    return p


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file()]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the repo (tracked + untracked-not-ignored files) with tiny params, pipeline run."""
    dst = tmp_path_factory.mktemp("mtlib") / "repo"
    for f in tracked_files():
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dst / f)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    (dst / "params.yaml").write_text(yaml.safe_dump(deep_update(params, TINY), sort_keys=False))
    run(["git", "init", "-q"], dst)
    run(["git", "add", "-A"], dst)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], dst)
    run(["dvc", "repro"], dst)
    return dst


# metrics/<name>.json of both models on the three test splits the tiny pipeline evaluates
METRIC_FILES = tuple(
    f"{kind}{sfx}" for sfx in ("", "_unseen", "_recorded") for kind in ("ctc", "seq2seq")
)


@pytest.mark.slow
def test_repro_writes_comparable_metrics(repo):
    files = {
        name: json.loads((repo / "metrics" / f"{name}.json").read_text()) for name in METRIC_FILES
    }
    keys = set(files["ctc"])
    assert all(set(m) == keys for m in files.values()), (
        "every model and split reports the same keys for dvc metrics show/diff"
    )
    assert METRIC_KEYS <= keys and not any("rtf" in k for k in keys), (
        "speed lives in speed.json, apart from accuracy"
    )
    for m in files.values():
        for k in METRIC_KEYS - {"ter", "tracks"}:
            assert 0.0 <= m[k] <= 1.0, (k, m[k])
        assert m["ter"] >= 0 and m["tracks"] >= 1
    manifest = pd.read_parquet(repo / "data" / "manifest.parquet", columns=["split", "track"])
    test_ids = set(manifest.track[manifest.split == "test"])
    unseen_ids = set(manifest.track[manifest.split == "test_unseen"])
    assert unseen_ids == {f"u{t}" for t in test_ids}, (
        "test_unseen holds the test pieces, re-rendered"
    )
    recorded_ids = set(manifest.track[manifest.split == "test_recorded"])
    assert recorded_ids == {f"r{t}" for t in test_ids}, "test_recorded too"
    assert (
        files["ctc_recorded"]["tracks"]
        == files["ctc_unseen"]["tracks"]
        == files["ctc"]["tracks"]
        == len(test_ids)
    )
    speed = json.loads((repo / "metrics" / "speed.json").read_text())
    assert (
        set(speed)
        == {
            f"{kind}/rtf{sfx}"
            for kind in ("ctc", "seq2seq")
            for sfx in ("", "_unseen", "_recorded")
        }
        and min(speed.values()) > 0
    )
    for name in files:  # by ensemble (musicnet_metadata.csv) and by instrument
        groups = pd.read_csv(repo / "metrics" / f"by_group_{name}.csv")
        assert set(groups.group) == {"ensemble", "instrument"}, name
        assert groups.note_recall.between(0, 1).all() and (groups.notes > 0).all()
    shown = run(["dvc", "metrics", "show", "--json"], repo).stdout
    assert all(f"metrics/{name}.json" in shown for name in files)
    assert any((repo / "plots").rglob("*.png")), "piano rolls are written as PNG"
    assert (repo / "data" / "predictions").is_dir()
    # the offset keys are swept after the onset grid, on the best config, by note-with-offset F1
    # (plus sweep.frame_f1_weight x frame F1)
    for kind in ("ctc", "seq2seq"):
        params = yaml.safe_load((repo / "params.yaml").read_text())
        # the frame-head keys are swept only for a model with a frame head
        offset_keys = [k for k in OFFSET_KEYS if k in params["sweep"][kind]]
        # ... and then the legato rule on the best of them, ranked the same way
        tail_keys = [k for k in OFFSET_TAIL_KEYS if k in params["sweep"][kind]]
        assert tail_keys == ["legato_semitones"], kind
        has_head = params["model"][kind]["frame_weight"] > 0
        assert "offset_shift_frames" in offset_keys
        assert ("frame_threshold" in offset_keys) == has_head, kind
        assert ("frame_scope" in offset_keys) <= has_head, kind
        table = pd.read_csv(repo / "plots" / f"sweep_{kind}.csv")
        for key in offset_keys + tail_keys:
            assert set(table[key]) == set(params["sweep"][kind][key]) | {params["decode"][key]}
        best = json.loads((repo / "data" / "sweep" / f"best_{kind}.json").read_text())
        same_onsets = np.ones(len(table), bool)
        for key in params["sweep"][kind]:
            if key not in offset_keys + tail_keys:
                same_onsets &= (table[key].astype(str) == str(best["decode"][key])).to_numpy()
        candidates = table[same_onsets]  # the best onset config under every offset combination
        # every combination of the offset grid that decodes differently (acting_offsets), plus
        # the best onset row with the decode.* offset values (once where the grid has it too)
        combos = itertools.product(*(params["sweep"][kind][k] for k in offset_keys))
        n_combos = len(
            {acting_offsets({**best["decode"], **dict(zip(offset_keys, c))}) for c in combos}
        )
        assert len(candidates) >= n_combos
        rank = (
            candidates["note_offset/f1"]
            + params["sweep"]["frame_f1_weight"] * candidates["frame/f1"]
        )
        top = candidates.loc[rank.idxmax()]
        assert all(best["decode"][k] == top[k] for k in offset_keys + tail_keys)
        assert best["val/note_offset_f1"] == pytest.approx(top["note_offset/f1"])
    # nothing is stale after a full run
    assert "changed" not in run(["dvc", "status"], repo).stdout


@pytest.mark.slow
def test_predictions_rescore_and_transcribe_the_same_from_anywhere(repo, tmp_path):
    """The predictions evaluate writes are real (non-empty), `mt score` on them reproduces the
    metrics files, and `mt transcribe --checkpoint` run from another directory finds the
    checkpoint's own decoding and writes the same notes as evaluate."""
    mt = str(VENV_BIN / "mt")
    labels = repo / "data" / "musicnet_demo" / "test_labels"
    rows = 0
    for kind in ("ctc", "seq2seq"):
        pred = repo / "data" / "predictions" / kind
        rows += sum(len(pd.read_csv(f)) for f in pred.glob("*.csv"))
        out = tmp_path / f"{kind}.json"
        run([mt, "score", str(labels), str(pred), "--json", str(out)], tmp_path)
        metrics = json.loads((repo / "metrics" / f"{kind}.json").read_text())
        assert json.loads(out.read_text())["mean"]["note/f1"] == pytest.approx(
            metrics["note/f1"], abs=1e-9
        )
        assert (repo / "data" / "models" / f"{kind}.decode.json").is_file()
    assert rows > 0, "the tiny models transcribe some notes"
    track = sorted(labels.glob("*.csv"))[0].stem
    wav = repo / "data" / "musicnet_demo" / "test_data" / f"{track}.wav"
    for kind in ("ctc", "seq2seq"):
        p = run(
            [
                mt,
                "transcribe",
                str(wav),
                "--model",
                kind,
                "--checkpoint",
                str(repo / "data" / "models" / f"{kind}.pt"),
                "--out",
                str(tmp_path / kind),
            ],
            tmp_path,
        )
        said = " ".join(p.stderr.split())  # rich wraps long lines
        assert (
            f"decoding from {repo / 'data' / 'models' / kind}.decode.json" in said
            and "SHA-256" not in said
        )
        ours = pd.read_csv(tmp_path / kind / f"{track}.csv")
        evaluated = pd.read_csv(repo / "data" / "predictions" / kind / f"{track}.csv")
        pd.testing.assert_frame_equal(ours, evaluated)


@pytest.mark.slow
def test_portable_math_stage_trains_the_same_model_on_other_kernels(repo):
    """train.common.portable_math through the train stage itself: it starts itself again under
    mtlib.portable's environment, and the checkpoint is the same with oneDNN and MKL capped to
    AVX2 (another CPU, imitated), where the default arithmetic's differs."""
    import torch

    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        pytest.skip("imitating another CPU needs a CPU with kernels wider than AVX2")
    caps = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    runs = {
        "portable": train_ctc_with(repo, "portable", threads=1, portable_math=True),
        "portable_capped": train_ctc_with(repo, "pc", caps, threads=1, portable_math=True),
    }
    logs = {name: finished(proc) for name, (_, proc) in runs.items()}
    assert all("portable_math: running again under MKL_CBWR=COMPATIBLE" in t for t in logs.values())
    ckpt = torch.load(runs["portable"][0] / "ctc.pt", map_location="cpu", weights_only=False)
    assert ckpt["extra"]["train"]["portable_math"] is True
    assert torch.equal(
        weights(runs["portable"][0] / "ctc.pt"), weights(runs["portable_capped"][0] / "ctc.pt")
    )
    default = {
        name: train_ctc_with(repo, name, env, threads=1) for name, env in (("d", {}), ("dc", caps))
    }
    for _, proc in default.values():
        assert "portable_math" not in finished(proc)
    assert not torch.equal(
        weights(default["d"][0] / "ctc.pt"), weights(default["dc"][0] / "ctc.pt")
    )


def dry_stages(repo: Path, key: str, value) -> set[str]:
    """Stages `dvc repro --dry --force-downstream` would run after setting params key=value."""
    text = (repo / "params.yaml").read_text()
    params = yaml.safe_load(text)
    node = params
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        out = run(["dvc", "repro", "--dry", "--force-downstream"], repo).stdout
    finally:
        (repo / "params.yaml").write_text(text)
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


@pytest.mark.slow
def test_param_changes_rerun_exactly_their_stages(repo):
    assert dry_stages(repo, "vocab.max_shift", 48) == {
        "tokenize",
        "manifest",
        "train_ctc",
        "train_seq2seq",
        "decode_sweep",
        "evaluate",
        "report",
    }
    assert dry_stages(repo, "audio.hop_length", 256) == {
        "segment",
        "tokenize",
        "manifest",
        "train_ctc",
        "train_seq2seq",
        "decode_sweep",
        "evaluate",
        "report",
    }
    assert dry_stages(repo, "decode.min_len", 20) == {"decode_sweep", "evaluate", "report"}
    assert dry_stages(repo, "report.ab_tracks", 1) == {"report"}
    # the Seq2Seq encoder starts from the CTC checkpoint (train.seq2seq.init_encoder), so it follows
    assert dry_stages(repo, "train.ctc.epochs", 2) == {
        "train_ctc",
        "train_seq2seq",
        "decode_sweep",
        "evaluate",
        "report",
    }
    assert dry_stages(repo, "train.seq2seq.ss_max", 0.3) == {
        "train_seq2seq",
        "decode_sweep",
        "evaluate",
        "report",
    }
    assert dry_stages(repo, "train.augment.gain_db", 3.0) == {
        "train_ctc",
        "train_seq2seq",
        "decode_sweep",
        "evaluate",
        "report",
    }


@pytest.mark.slow
def test_exp_run_min_len_reaches_the_seq2seq_decoder(repo):
    p = run(["dvc", "exp", "run", "-S", "decode.min_len=20"], repo)
    ran = {line.split("'")[1] for line in p.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"decode_sweep", "evaluate", "report"}, p.stdout
    s2s = json.loads((repo / "metrics" / "seq2seq.json").read_text())
    assert s2s["decode/min_len"] == 20


# --------------------------------------------------------------------------- `mt transcribe` with the tiny checkpoints


def tone_mix(rate: int, seconds: float = 3.0) -> np.ndarray:
    """Harmonic tones (A3, then C5 + E5) as mono float32 at `rate`: a file 'made in the test'."""
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros_like(t)
    for f0, start, stop in ((220.0, 0.2, 1.4), (523.25, 1.5, 2.8), (659.26, 1.5, 2.8)):
        env = ((t >= start) & (t < stop)) * np.exp(-3 * np.clip(t - start, 0, None))
        x += sum(env * np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))
    return (0.2 * x).astype(np.float32)


@pytest.fixture(scope="module")
def audio_dir(repo) -> Path:
    import soundfile as sf
    import soxr

    d = repo / "inbox"
    (d / "sub").mkdir(parents=True)
    mono16 = tone_mix(16000)
    sf.write(d / "mono16.wav", mono16, 16000, subtype="FLOAT")
    stereo48 = soxr.resample(mono16, 16000, 48000, quality="HQ")
    sf.write(d / "sub" / "stereo48.flac", np.stack([stereo48, stereo48], axis=1), 48000)
    sf.write(d / "silent.ogg", np.zeros(16000, np.float32), 16000)
    rms = float(np.sqrt(np.mean(mono16.astype(np.float64) ** 2)))
    for name, db in (
        ("quiet", -45.0),
        ("loud", -10.0),
    ):  # float WAVs: no 16-bit quantisation at -45 dB
        (d / "levels").mkdir(exist_ok=True)
        sf.write(
            d / "levels" / f"{name}.wav", mono16 * (10 ** (db / 20) / rms), 16000, subtype="FLOAT"
        )
    (d / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really audio")
    return d


def transcribe(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["mt", "transcribe", *args], repo, check=check)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ctc", "seq2seq"])
def test_transcribe_writes_readable_midi_csv_png_and_reports_bad_files(repo, audio_dir, kind):
    import pretty_midi

    from mtlib.musicnet import read_labels

    out = repo / f"out_{kind}"
    p = transcribe(
        repo,
        str(audio_dir),
        str(repo / "missing.wav"),
        "--model",
        kind,
        "--out",
        str(out),
        check=False,
    )
    assert p.returncode == 1, p.stderr  # the broken and the missing file
    assert "broken.wav" in p.stderr and "unreadable audio" in p.stderr
    assert "missing.wav" in p.stderr and "no such file" in p.stderr
    assert "silent.ogg: silent audio" in p.stderr
    assert (
        f"decoding from data/models/{kind}.decode.json" in p.stderr
    )  # the decode_sweep choice for this checkpoint
    for stem, rate in (("mono16", 16000), ("sub/stereo48", 48000), ("silent", 16000)):
        midi = pretty_midi.PrettyMIDI(str(out / f"{stem}.mid"))
        notes = read_labels(out / f"{stem}.csv", rate)
        assert sum(len(i.notes) for i in midi.instruments) == len(notes)
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "broken.mid").exists()
    assert read_labels(out / "silent.csv", 16000) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ctc", "seq2seq"])
def test_stereo_48k_gives_the_notes_of_mono_16k(repo, audio_dir, kind):
    from mtlib.musicnet import read_labels

    out = repo / f"same_{kind}"
    transcribe(
        repo,
        str(audio_dir / "mono16.wav"),
        str(audio_dir / "sub" / "stereo48.flac"),
        "--model",
        kind,
        "--out",
        str(out),
        "--decoder",
        "greedy",
    )
    a = sorted(read_labels(out / "mono16.csv", 16000), key=lambda n: (n.pitch, n.onset))
    b = sorted(read_labels(out / "stereo48.csv", 48000), key=lambda n: (n.pitch, n.onset))
    frame = 512 / 16000 + 1e-6
    assert [n.pitch for n in a] == [n.pitch for n in b]
    assert all(
        abs(x.onset - y.onset) <= frame and abs(x.offset - y.offset) <= frame for x, y in zip(a, b)
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ctc", "seq2seq"])
def test_level_does_not_change_the_notes(repo, audio_dir, kind):
    """The same file at -45 dBFS and at -10 dBFS RMS gives the same notes (features are level-normalised)."""
    from mtlib.musicnet import read_labels

    out = repo / f"levels_{kind}"
    transcribe(repo, str(audio_dir / "levels"), "--model", kind, "--out", str(out))
    quiet, loud = (read_labels(out / f"{name}.csv", 16000) for name in ("quiet", "loud"))
    assert quiet == loud


@pytest.mark.slow
def test_transcribe_missing_checkpoint_names_it(repo, audio_dir):
    p = transcribe(repo, str(audio_dir / "mono16.wav"), "--checkpoint", "nowhere.pt", check=False)
    assert p.returncode == 2 and "nowhere.pt: checkpoint not found" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("value", ["inf", "nan", "0", "-5"])
def test_transcribe_rejects_an_impossible_roll_length_before_writing(repo, audio_dir, value):
    out = repo / f"roll_{value}"
    p = transcribe(
        repo, str(audio_dir / "mono16.wav"), "--out", str(out), "--roll-seconds", value, check=False
    )
    assert p.returncode == 2 and f"--roll-seconds {float(value)}: must be a finite" in p.stderr
    assert not out.exists()


@pytest.mark.slow
def test_transcribe_outputs_come_together_or_not_at_all(repo, audio_dir):
    """--out naming a file stops before the model loads; a folder in the way of one output skips
    that input (no .mid without its .csv) and the next input is still done; every transcription
    carries its CSV's rate in `<name>.json`, which `mt score` reads."""
    from mtlib.metrics import label_file_rate

    (repo / "a_file").write_text("keep me")
    p = transcribe(repo, str(audio_dir / "mono16.wav"), "--out", str(repo / "a_file"), check=False)
    assert p.returncode == 2 and "--out" in p.stderr and "is a file" in p.stderr
    assert (repo / "a_file").read_text() == "keep me"

    out = repo / "blocked"
    (out / "mono16.csv").mkdir(parents=True)
    p = transcribe(
        repo, str(audio_dir / "mono16.wav"), str(audio_dir / "sub"), "--out", str(out), check=False
    )
    said = " ".join(p.stderr.split())
    assert p.returncode == 1 and f"{out / 'mono16.csv'} is a folder" in said
    assert sorted(f.name for f in out.iterdir()) == [
        "mono16.csv",
        "stereo48.csv",
        "stereo48.json",
        "stereo48.mid",
        "stereo48.png",
    ]
    assert label_file_rate(out / "stereo48.csv", 44100)[0] == 48000
    assert json.loads((out / "stereo48.json").read_text())["model"] == "ctc"


@pytest.mark.slow
def test_evaluate_checks_every_input_before_writing(repo, tmp_path):
    """A missing model or a manifest without the evaluated splits stops evaluate before it
    writes any metrics, predictions or plots (it used to write the first model's metrics)."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("ctc.pt", "ctc.decode.json"):
        shutil.copy(repo / "data" / "models" / name, models / name)
    outs = ["--metrics", str(tmp_path / "m"), "--out", str(tmp_path / "p")]
    outs += ["--plots", str(tmp_path / "pl")]
    p = run(["mt", "evaluate", "--models", str(models), *outs], repo, check=False)
    assert p.returncode == 2 and f"{models / 'seq2seq.pt'}: checkpoint not found" in p.stderr
    manifest = tmp_path / "manifest.parquet"
    full = pd.read_parquet(repo / "data" / "manifest.parquet")
    full[full.split == "train"].to_parquet(manifest)
    p = run(["mt", "evaluate", "--manifest", str(manifest), *outs], repo, check=False)
    assert p.returncode == 2 and f"{manifest}: no tracks in eval.splits" in p.stderr, p.stderr
    assert not any((tmp_path / d).exists() for d in ("m", "p", "pl"))


@pytest.mark.slow
def test_a_team_shares_one_run_through_a_dvc_remote(repo, tmp_path):
    """`dvc push` to a remote (here a local folder, as README's "Share data" shows), then a fresh
    clone `dvc pull`s the demo data, features, tokens and models bit for bit and is up to date:
    nothing to recompute."""
    store = tmp_path / "store"
    run(["dvc", "remote", "add", "--local", "-d", "team", str(store)], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], repo)
    run(["dvc", "push"], repo)
    assert any(store.rglob("*")), "the remote holds the cached outputs"
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--local", "-d", "team", str(store)], clone)
    run(["dvc", "pull"], clone)
    for path in (
        "data/features/tracks.parquet",
        "data/tokens/tokens.parquet",
        "data/models/ctc.pt",
    ):
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
    assert "up to date" in run(["dvc", "status"], clone).stdout


@pytest.mark.slow
def test_transcribe_sonify_writes_listenable_files_at_the_inputs_rate_and_length(repo, audio_dir):
    import soundfile as sf

    out = repo / "sonified"
    transcribe(repo, str(audio_dir / "sub" / "stereo48.flac"), "--out", str(out), "--sonify")
    given = sf.info(str(audio_dir / "sub" / "stereo48.flac"))
    alone, ab = (sf.info(str(out / f"stereo48.{s}.wav")) for s in ("sonified", "ab"))
    assert (alone.samplerate, alone.frames, alone.channels) == (48000, given.frames, 1)
    assert (ab.samplerate, ab.frames, ab.channels) == (48000, given.frames, 2)
    left, _ = sf.read(str(out / "stereo48.ab.wav"))
    original, _ = sf.read(str(audio_dir / "sub" / "stereo48.flac"))
    # the recording, mono, on the left (16-bit; scaled down only if a side would clip)
    mono = original.mean(axis=1)
    scale = float(left[:, 0] @ mono / (mono @ mono))
    assert 0.5 < scale <= 1.0 + 1e-6
    np.testing.assert_allclose(left[:, 0], scale * mono, atol=2 / 32768)


# --------------------------------------------------------------------------- the report page and offline plots


@pytest.mark.slow
def test_report_shows_both_models_and_their_ab_audio(repo):
    import soundfile as sf

    page = (repo / "plots" / "report" / "index.html").read_text(encoding="utf-8")
    assert "cdn." not in page and "<script src" not in page, "every script is inlined"
    for name in METRIC_FILES:
        m = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert f"<td>{m['note/f1']:.3f}</td>" in page, name
    params = yaml.safe_load((repo / "params.yaml").read_text())["report"]
    manifest = pd.read_parquet(repo / "data" / "manifest.parquet", columns=["split", "track"])
    tracks = pd.read_parquet(repo / "data" / "features" / "tracks.parquet").set_index("track")
    expected = set()
    for split in ("test", "test_unseen", "test_recorded"):
        ids = list(dict.fromkeys(manifest.track[manifest.split == split].astype(str)))
        for tid in ids[: params["ab_tracks"]]:
            rate = int(tracks.loc[tid, "file_rate"])
            original, _ = sf.read(repo / tracks.loc[tid, "audio"], dtype="float32")
            n = min(original.shape[0], round(params["ab_seconds"] * rate))
            for kind in ("ctc", "seq2seq"):
                name = f"{kind}_{tid}.ab.flac"
                expected.add(name)
                ab, ab_rate = sf.read(repo / "plots" / "report" / "audio" / name, dtype="float32")
                assert ab_rate == rate and ab.shape == (n, 2), name
                left = original[:n] if original.ndim == 1 else original[:n].mean(axis=1)
                assert np.corrcoef(ab[:, 0], left)[0, 1] > 0.999, "the recording is on the left"
                assert f'src="audio/{name}"' in page
    assert {p.name for p in (repo / "plots" / "report" / "audio").iterdir()} == expected


def headless_chromium():
    """Debian's chromium driven by its chromedriver through selenium; skips where there is none."""
    pytest.importorskip("selenium")
    from selenium import webdriver

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip(
            "no headless browser: install Debian's chromium and chromium-driver "
            "(sudo apt-get install chromium chromium-driver) to run the offline-plots test"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))


def network_requests(driver) -> list[str]:
    """URLs requested since the last call other than the page's own files (file:, data:, blob:)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [u for u in urls if not u.startswith(("file:", "data:", "blob:", "about:"))]


ALL_DRAWN = """return arguments[0].every(id => {
  const div = document.getElementById(id);
  return !!(div && div.querySelector('svg, canvas'));
});"""


@pytest.mark.slow
def test_plots_and_report_draw_in_a_browser_with_no_network(repo, tmp_path):
    import re

    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chromium()
    try:
        cdn = tmp_path / "cdn.html"  # the check can fail: DVC's own page loads vega like this
        cdn.write_text('<script src="https://cdn.jsdelivr.net/npm/vega@5.20.2"></script>')
        driver.get(cdn.as_uri())
        assert network_requests(driver) == ["https://cdn.jsdelivr.net/npm/vega@5.20.2"]
        # what scripts/setup does, then the plain command (.dvc/config names the template)
        run([sys.executable, "-m", "mtlib.report", "template", ".dvc/plots_template.html"], repo)
        run(["dvc", "plots", "show", "-o", str(tmp_path / "dvc_plots")], repo)
        for page in (tmp_path / "dvc_plots" / "index.html", repo / "plots/report/index.html"):
            ids = re.findall(r"vegaEmbed\(['\"]#([^'\"]+)", page.read_text(encoding="utf-8"))
            assert len(ids) >= 4, page
            driver.get(page.as_uri())
            WebDriverWait(driver, 60).until(lambda d, ids=ids: d.execute_script(ALL_DRAWN, ids))
            assert network_requests(driver) == [], page
        # the report (loaded last): piano rolls decode, every A/B file plays in the browser
        images = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert images and all(images)
        driver.execute_script(
            "document.querySelectorAll('audio').forEach(a => { a.preload = 'metadata'; a.load(); })"
        )
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(
                "return Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1)"
            )
        )
        durations = driver.execute_script(
            "return Array.from(document.querySelectorAll('audio')).map(a => a.duration)"
        )
        assert durations and all(d > 1.0 for d in durations), durations
    finally:
        driver.quit()


# --------------------------------------------------------------------------- DDP: train.common.nproc


def train_ctc_with(
    repo: Path, name: str, env_extra: dict | None = None, **common
) -> tuple[Path, subprocess.Popen]:
    """Start the train_ctc stage in `repo` with train.common overrides (and `env_extra` in its
    environment), writing under `name`/."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["ctc"]["epochs"] = common.pop("epochs", 1)
    params["train"]["common"].update(common)
    out = repo / "ddp" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = [sys.executable, "-m", "stages.train_ctc", "--params", str(out / "params.yaml")]
    cmd += ["--out", str(out / "ctc.pt"), "--live", str(out / "live")]
    cmd += ["--resume", str(out / "resume.pt")]
    env = dict(os.environ, DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1", **(env_extra or {}))
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        cmd,
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return out, proc


def finished(proc: subprocess.Popen) -> str:
    """The run's output, once it has exited 0. On failure the message shows every `Error:` line
    (a relaunched child's, which the parent's traceback pushes out of the tail) and the tail."""
    stdout, _ = proc.communicate(timeout=900)
    errors = "\n".join(line for line in stdout.splitlines() if line.startswith("Error:"))
    assert proc.returncode == 0, f"{errors}\n...\n{stdout[-4000:]}"
    return stdout


def weights(path: Path):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return torch.cat(
        [v.flatten().double() for k, v in sorted(state.items()) if v.is_floating_point()]
    )


@pytest.mark.slow
def test_two_gloo_processes_train_as_one_process_with_the_same_global_batch(repo):
    """2 CPU processes (torchrun, gloo), each with half of every batch of 4, against 1 process with
    batches of 4 and 1 process with batches of 2 (the per-process share, a different run)."""
    import pandas as pd

    from mtlib.dataset import BucketBatchSampler, SegmentDataset

    train = SegmentDataset(pd.read_parquet(repo / "data" / "manifest.parquet"), "train")
    sizes = [len(b) for b in BucketBatchSampler(train.lengths("n_frames"), 4, shuffle=True, seed=0)]
    # the comparison holds only where two processes see the one process's steps, halved evenly
    assert all(n % 2 == 0 for n in sizes), f"tiny train batches {sizes}: see TINY's split"
    runs = {
        "one": train_ctc_with(repo, "one", batch_size=4, threads=1, nproc=1),
        "two": train_ctc_with(repo, "two", batch_size=4, threads=1, nproc=2),
    }
    logs = {name: finished(proc) for name, (_, proc) in runs.items()}
    assert "2 processes" in logs["two"] and "torch.distributed.run" in logs["two"]
    assert logs["two"].count("best val note F1") == 1, "rank 0 alone reports and writes"
    half_out, half = train_ctc_with(repo, "half", batch_size=2, threads=1, nproc=1)
    finished(half)
    one, two, other = (
        weights(runs["one"][0] / "ctc.pt"),
        weights(runs["two"][0] / "ctc.pt"),
        weights(half_out / "ctc.pt"),
    )
    # BatchNorm statistics are per process on the CPU (no SyncBatchNorm there), so not bit-equal:
    # the 2-process model must sit within 25% of the distance that a batch of 2 puts between runs
    assert (two - one).norm() < 0.25 * (other - one).norm(), (
        float((two - one).norm()),
        float((other - one).norm()),
    )


def processes_mentioning(path: Path) -> list[int]:
    """Pids whose command line names `path` (this machine's /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue  # it ended meanwhile
    return pids


@pytest.mark.slow
def test_a_run_interrupted_with_two_processes_resumes_with_one(repo):
    import signal
    import time

    out, proc = train_ctc_with(repo, "resume", batch_size=4, threads=1, nproc=2, epochs=2)
    deadline = time.time() + 600
    while not (out / "resume.pt").exists():  # written after epoch 1
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # an interruption: torchrun stops its workers
    proc.wait()
    while processes_mentioning(out):  # the workers are torchrun's, in process groups of their own
        assert time.time() < deadline
        time.sleep(0.1)
    assert not (out / "ctc.pt").exists()
    _, again = train_ctc_with(repo, "resume", batch_size=4, threads=1, nproc=1, epochs=2)
    log = finished(again)
    assert "resuming from" in log and "at epoch 2" in log, log[:3000]
    assert "[ctc] epoch 1:" not in log and "[ctc] epoch 2:" in log
    assert (out / "ctc.pt").is_file() and not (out / "resume.pt").exists()
