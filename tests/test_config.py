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


def test_llm_section_is_validated_like_the_rest(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[[llm.backends]]\nspec = "openai:gpt-4o"\nweight = 2\n[[llm.backends]]\nspec = "local:"\n')
    c = load_config(f)
    assert [(b.spec, b.weight) for b in c.llm.backends] == [("openai:gpt-4o", 2.0), ("local:", 1.0)]
    f.write_text('[[llm.backends]]\nspec = "local:"\nconcurency = 3\n')
    with pytest.raises(ConfigError, match="llm.backends.0.concurency"):
        load_config(f)
    f.write_text("[llm]\nbackends = []\n")
    with pytest.raises(ConfigError, match="llm.backends"):
        load_config(f)


def test_flags_come_from_the_config_fields_once():
    from eqforge.cli import build_parser
    from eqforge.flags import apply_flags

    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]  # noqa: SLF001
    flags = [s for a in run._actions for s in a.option_strings]  # noqa: SLF001
    assert len(flags) == len(set(flags))
    help_text = run.format_help()
    for needle in ("--islands", "(default: 10)", "--samples-per-prompt", "--llm-retries", "--no-cache",
                   "--fit-subsample", "{default,llmsr}"):
        assert needle in help_text
    args = parser.parse_args(["run", "p", "--llm", "openai:a@3", "--llm", "replay:x", "--base-url", "http://h",
                              "--islands", "3", "--no-cache", "--llm-concurrency", "2"])
    c = apply_flags(Config(), args)
    assert c.database.islands == 3 and c.llm.cache is False
    assert [(b.spec, b.weight, b.base_url, b.concurrency) for b in c.llm.backends] == [
        ("openai:a", 3.0, "http://h", 2), ("replay:x", 1.0, "http://h", 2)]
    assert apply_flags(Config(), parser.parse_args(["run", "p"])) == Config()


def test_run_directories_from_before_the_llm_section_still_load():
    from eqforge.config import upgrade_saved

    old = {"run": {"problem": "p", "data": None, "llm": ["openai:a@0.5", "local:"],
                   "backend": {"base_url": "http://h", "prices": "p.toml", "cache": False}},
           "config": {**Config().model_dump(mode="json"), "llm": None}}
    old["config"].pop("llm")
    old["config"]["sampler"]["prompt_style"] = "completion"
    new = upgrade_saved(old)
    assert new["run"] == {"problem": "p", "data": None}
    c = Config.model_validate(new["config"])
    assert c.llm.prices == "p.toml" and c.llm.cache is False
    assert [(b.spec, b.weight, b.prompt_style, b.base_url) for b in c.llm.backends] == [
        ("openai:a", 0.5, "completion", "http://h"), ("local:", 1.0, "completion", "http://h")]
    assert upgrade_saved(new) == new
