"""benchmarks/gpu_scale.py: every configuration it trains names keys params.yaml has, so the
GPU run (which cannot be repeated cheaply) fails here, not there, when a key is renamed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from benchmarks.gpu_scale import CONFIGS, joined, set_key, split_file
from mtlib.params import section

PARAMS = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_configuration_sets_existing_params(name):
    params = copy.deepcopy(PARAMS)
    for key, value in CONFIGS[name].items():
        set_key(params, key, value)
        assert section(params, key) == value


def test_an_unknown_key_is_refused_by_name():
    with pytest.raises(SystemExit, match="params.yaml has no train.ctc.epoch"):
        set_key(copy.deepcopy(PARAMS), "train.ctc.epoch", 3)


def test_a_large_checkpoint_is_split_for_return_and_joined_back(tmp_path):
    data = bytes(range(256)) * 41  # 10,496 bytes
    big, small = tmp_path / "big.pt", tmp_path / "small.pt"
    big.write_bytes(data)
    small.write_bytes(data[:100])
    parts = split_file(big, limit=4000)
    assert [p.name for p in parts] == ["big.pt.part0", "big.pt.part1", "big.pt.part2"]
    assert [p.stat().st_size for p in parts] == [4000, 4000, 2496]
    assert not big.exists()
    assert split_file(small, limit=4000) == [small]
    assert joined(big).read_bytes() == data
    with pytest.raises(SystemExit, match="none.pt: no such checkpoint"):
        joined(tmp_path / "none.pt")
