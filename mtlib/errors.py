"""Errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path


class MusicNetFormatError(ValueError):
    """A MusicNet-format file or folder is malformed. The message starts with the path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # survive pickling back from a worker process
        return (type(self), (self.path, self.problem))


class AudioError(MusicNetFormatError):
    """An audio file cannot be read, is empty, or is otherwise unusable."""
