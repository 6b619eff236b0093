"""Atomic outputs: write to a temporary sibling, then rename, so an interrupted stage never
leaves a partial file (or folder) for DVC to cache."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def default_mode(directory: bool = False) -> int:
    """The permissions a plainly created file (0o666) or folder (0o777) gets under the current
    umask. tempfile's files are 0o600 and folders 0o700, which would make every output unreadable
    to the other users of a shared machine once renamed into place."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, with the
    permissions a plainly written file would have (`default_mode`)."""
    path = Path(path)
    with _temporary(path) as tmp:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, default_mode())
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` whole (with the
    permissions a plainly created folder would have)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, default_mode(directory=True))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def output_problem(paths: list[Path]) -> str | None:
    """Why `paths` cannot be written as files (a folder already has one's name, or a parent is a
    file), or None. Checked before the work that produces them, so nothing runs for nothing."""
    for path in map(Path, paths):
        if path.is_dir():
            return f"{path} is a folder; cannot write a file there"
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    return f"{parent} is a file, not a folder; cannot write {path}"
                break
    return None


@contextlib.contextmanager
def atomic_files(paths: list[Path]) -> Iterator[list[Path]]:
    """Yield one temporary path per entry of `paths`; on success all are renamed into place, so
    a set of outputs (a transcription's .mid, .csv, .png, .json) appears together or not at all.
    If a rename fails half way, the files already renamed are removed again."""
    paths = [Path(p) for p in paths]
    with contextlib.ExitStack() as stack:
        temps = [stack.enter_context(_temporary(p)) for p in paths]
        yield temps
        done: list[Path] = []
        try:
            for tmp, path in zip(temps, paths):
                os.chmod(tmp, default_mode())
                os.replace(tmp, path)
                done.append(path)
        except BaseException:
            for path in done:
                path.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` (same suffix, so writers that go by it still work), removed
    on exit unless it was renamed away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
