"""``eqforge models export-hf``: the default GGUF model as an HF checkpoint vLLM can serve.

The conversion itself takes a minute or more, so it runs once in ``.ci/install-vllm.sh``
(which calls this command); the vllm-marked test checks what it wrote, the fast ones check
the refusals and the tokenizer fix-ups.
"""

from __future__ import annotations

import json

import pytest

from eqforge.agents.llm.export_hf import GEMMA_CHAT_TEMPLATE, _fix_tokenizer_config
from eqforge.cli import main


def test_refuses_to_overwrite_without_the_flag(tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert main(["models", "export-hf", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert (out / "config.json").read_text() == "{}"


def test_missing_gguf_is_one_line(tmp_path, capsys):
    assert main(["models", "export-hf", str(tmp_path / "m"), "--gguf", str(tmp_path / "nope.gguf")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such GGUF file" in err[0]


def test_tokenizer_config_keeps_bos_and_gets_a_template(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<bos>", "add_bos_token": False}))
    (tmp_path / "chat_template.jinja").write_text("x")
    _fix_tokenizer_config(tmp_path, chat_template=True)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["add_bos_token"] is True and cfg["chat_template"] == GEMMA_CHAT_TEMPLATE
    _fix_tokenizer_config(tmp_path, chat_template=False)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["add_bos_token"] is True and "chat_template" not in cfg
    assert not (tmp_path / "chat_template.jinja").exists()


def test_chat_template_renders_gemma_turns():
    jinja2 = pytest.importorskip("jinja2")
    text = jinja2.Template(GEMMA_CHAT_TEMPLATE).render(
        bos_token="<bos>", add_generation_prompt=True,
        messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "<bos>S\n\n<start_of_turn>user\nU<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.vllm
def test_the_cached_export_is_a_plain_bf16_checkpoint():
    import vllm_env

    reason = vllm_env.missing()
    if reason:
        pytest.skip(reason)
    model = vllm_env.MODEL
    config = json.loads((model / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["Gemma3ForCausalLM"]
    tok = json.loads((model / "tokenizer_config.json").read_text())
    assert tok["add_bos_token"] is True and tok["chat_template"]
    weights = model / "model.safetensors"
    assert 400e6 < weights.stat().st_size < 700e6  # bf16, de-quantised (544 MB)
    assert json.loads((model / "eqforge-export.json").read_text())["dtype"] == "bfloat16"
