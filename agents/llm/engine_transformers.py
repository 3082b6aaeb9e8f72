"""The transformers engine: prebuilt wheels, GGUF de-quantised to fp32, rows decoded as a batch.

What ``pip install -e ".[local]"`` always brings, so it is the fallback when the llama.cpp
engine cannot be built. A GGUF file is de-quantised once and the fp32 copy kept as a
snapshot (loads in seconds after). Decoding is hand-rolled rather than ``generate()``: the
prompt runs once, its KV cache is copied to the n rows, and each row leaves the batch the
moment its function body ends (``stops.StopScanner``), so a finished row costs nothing.
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import threading
from pathlib import Path
from typing import Any

from eqforge.agents.llm.base import PromptStyle, SamplingParams
from eqforge.agents.llm.engines import BODY_TOKENS, Sample
from eqforge.agents.llm.model_files import model_dir
from eqforge.agents.llm.stops import StopScanner, cut
from eqforge.prompts.prompt import Prompt

log = logging.getLogger(__name__)


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


class TransformersEngine:
    BODY_TOKENS = BODY_TOKENS

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

    def sample(self, prompt: Prompt, style: PromptStyle, sp: SamplingParams) -> list[Sample]:
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
            samples.append(Sample(text, len(ids) if k == 0 else 0, self.count(text),
                                   "stop" if was_cut or ended else "length"))
        return samples
