"""Configuration defaults are LLM-SR's; overrides are validated; unknown keys fail."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from eqforge.config import Config, load_config
from eqforge.errors import ConfigError


def test_defaults_are_llmsr():
    c = Config()
    assert c.database.islands == 10
    assert c.database.functions_per_prompt == 2
    assert c.sampler.samples_per_prompt == 4
    assert c.database.cluster_temperature_init == 0.1
    assert c.database.cluster_temperature_period == 30_000
    assert c.evaluator.timeout == 30
    assert c.evaluator.max_params == 10


def test_toml_overrides_and_unknown_keys(tmp_path):
    good = tmp_path / "c.toml"
    good.write_text("[run]\nsamples = 7\n[database]\nislands = 3\n")
    c = load_config(good)
    assert c.run.samples == 7 and c.database.islands == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nsampels = 7\n")
    with pytest.raises(ConfigError, match="sampels"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_cli_style_overrides_validate():
    c = Config().with_overrides({"run": {"samples": 5, "seed": None}})
    assert c.run.samples == 5 and c.run.seed == 0
    with pytest.raises(ConfigError):
        Config().with_overrides({"evaluator": {"timeout": -1}})
    with pytest.raises(ValidationError):
        Config().run.samples = 3  # frozen
