"""benchmarks/gpu_scale.py: every configuration it trains names keys params.yaml has, so the
GPU run (which cannot be repeated cheaply) fails here, not there, when a key is renamed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from benchmarks.gpu_scale import CONFIGS, set_key
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
