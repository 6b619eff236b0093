"""The General MIDI SoundFont used to render the demo data.

It ships inside pretty_midi's wheel from PyPI (`pretty_midi/TimGM6mb.sf2`), so `scripts/setup`
installs it with the pinned requirements and this module verifies its checksum; nothing is
downloaded at run time. `python -m mtlib.soundfont --check` is the set-up's check.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

SOUNDFONTS = {
    # name: (path inside site-packages relative to the package, sha256)
    "TimGM6mb": ("pretty_midi/TimGM6mb.sf2", "82475b91a76de15cb28a104707d3247ba932e228bada3f47bba63c6b31aaf7a1"),
}
SETUP_HINT = "run `scripts/setup` to install it"


class SoundFontError(FileNotFoundError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def soundfont_path(name: str = "TimGM6mb", verify: bool = True) -> Path:
    """Path of a known SoundFont, or of a .sf2 file given by path; checksum-verified when known."""
    if name.endswith(".sf2"):
        p = Path(name)
        if not p.is_file():
            raise SoundFontError(f"{p}: SoundFont file not found")
        return p
    if name not in SOUNDFONTS:
        raise SoundFontError(f"unknown SoundFont {name!r}: known are {', '.join(SOUNDFONTS)}, or give a path to a .sf2 file")
    rel, sha = SOUNDFONTS[name]
    import importlib.util

    spec = importlib.util.find_spec(rel.split("/")[0])
    if spec is None or spec.origin is None:
        raise SoundFontError(f"SoundFont {name}: package {rel.split('/')[0]} is not installed; {SETUP_HINT}")
    path = Path(spec.origin).parent.parent / rel
    if not path.is_file():
        raise SoundFontError(f"{path}: SoundFont {name} is missing; {SETUP_HINT}")
    if verify and _sha256(path) != sha:
        raise SoundFontError(f"{path}: SoundFont {name} has the wrong checksum (expected sha256 {sha}); {SETUP_HINT}")
    return path


if __name__ == "__main__":
    if "--check" in sys.argv:
        for n in SOUNDFONTS:
            print(f"SoundFont {n}: {soundfont_path(n)} (sha256 ok)")
