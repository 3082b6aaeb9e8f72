"""Getting the llama.cpp engine onto a machine that has no wheel for it.

llama-cpp-python publishes no Linux wheel on the index, so ``pip install`` compiles it:
11 minutes on 2 cores with its default flags (it builds every CPU variant), about 4 with
the flags below (one AVX2/FMA/F16C build, no multimodal tool). The default offline model
(Qwen2.5-Coder 1.5B) needs this engine, so the first ``local:`` run builds it once, says
so in one line, logs progress while it compiles, and keeps the wheel in
``~/.cache/eqforge/wheels`` (a new venv installs it in seconds). When the build cannot run
(no compiler, no AVX2, no index, ``EQFORGE_OFFLINE=1`` or ``EQFORGE_NO_BUILD=1``, or it
takes longer than ``EQFORGE_LLAMA_BUILD_TIMEOUT`` seconds) the caller falls back to the
transformers engine with Gemma 3 270M and says why.

``python -m eqforge.agents.llm.llama_build`` runs the same build by hand.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from eqforge.agents.llm.base import user_cache_dir
from eqforge.agents.llm.model_files import offline

log = logging.getLogger(__name__)

VERSION = "0.3.36"
FAST_FLAGS = "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


def wheel_dir() -> Path:
    return user_cache_dir("wheels", "EQFORGE_WHEEL_CACHE")


def installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cmake_args() -> str:
    """The fast flags where the CPU has AVX2/FMA/F16C; else llama.cpp's own detection."""
    if os.environ.get("CMAKE_ARGS"):
        return os.environ["CMAKE_ARGS"]
    have = _cpu_flags()
    return FAST_FLAGS if {"avx2", "fma", "f16c"} <= have else "-DLLAVA_BUILD=OFF"


def why_not() -> str | None:
    """Why a build cannot be tried here, or None."""
    if offline():
        return "downloads are off (EQFORGE_OFFLINE, or a test)"
    if os.environ.get("EQFORGE_NO_BUILD", "").strip() not in ("", "0"):
        return "EQFORGE_NO_BUILD is set"
    if not (shutil.which("cc") or shutil.which("gcc")) or not shutil.which("c++") and not shutil.which("g++"):
        return "no C/C++ compiler (apt-get install build-essential)"
    return None


def _pip(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def ensure(timeout: float | None = None) -> str | None:
    """Make ``import llama_cpp`` work: install a cached wheel, or build one. Returns None on
    success, else the reason it could not (the caller falls back and says so)."""
    if installed():
        return None
    cache = wheel_dir()
    wheels = sorted(cache.glob(f"llama_cpp_python-{VERSION}-*.whl"))
    if wheels and offline():
        return "downloads are off (EQFORGE_OFFLINE, or a test): not installing the cached wheel"
    if not wheels:
        reason = why_not()
        if reason:
            return reason
        timeout = timeout or float(os.environ.get("EQFORGE_LLAMA_BUILD_TIMEOUT", "1800"))
        flags = cmake_args()
        cache.mkdir(parents=True, exist_ok=True)
        log.warning("building the llama.cpp engine (llama-cpp-python %s) from source, once: about 4 min "
                    "on 2 idle cores, longer under load; cached in %s (EQFORGE_NO_BUILD=1 skips it)",
                    VERSION, cache)
        env = {**os.environ, "CMAKE_ARGS": flags,
               "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))}
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(cache),
               f"llama-cpp-python=={VERSION}"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            while proc.poll() is None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - t0
                    if elapsed > timeout:
                        proc.kill()
                        proc.wait()
                        return f"the build took over {timeout:.0f} s"
                    log.warning("  still compiling llama.cpp (%.0f s)", elapsed)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = proc.stdout.read() if proc.stdout else ""
        if proc.returncode != 0:
            tail = [ln for ln in output.splitlines() if ln.strip()][-1:] or ["?"]
            return f"the build failed ({tail[0][:200]})"
        log.warning("built the llama.cpp engine in %.0f s", time.monotonic() - t0)
        wheels = sorted(cache.glob(f"llama_cpp_python-{VERSION}-*.whl"))
        if not wheels:
            return "the build produced no wheel"
    res = _pip("install", "-q", str(wheels[-1]), timeout=900)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        return f"cannot install {wheels[-1].name} ({last[:200]})"
    importlib.invalidate_caches()
    return None if installed() else "llama_cpp does not import after installing it"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    reason = ensure()
    if reason:
        log.error("llama.cpp engine not installed: %s", reason)
        return 1
    log.info("llama.cpp engine ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
