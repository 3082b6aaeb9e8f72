"""The ``terms:`` backend: a floor that needs no language model.

It answers every prompt the way a model would — with a complete ``equation_vN`` in a Python
code block — but its program is a random sum of 2–6 terms drawn from a fixed library built
over the problem's inputs (powers, pairwise products, sin/cos/exp/log/tanh/abs of an input,
an input times its own sine or cosine), each term with its own ``params[i]``. Every study
can so carry a baseline row: a strategy that does not beat random sums on a problem has not
shown discovery there (such sums find oscillator1's exact law within a few hundred samples).

The backend reads only what a model reads: the inputs and the function to write come from the
function header the prompt shows (``equation_vN`` at the end of an LLM-SR prompt, or the
``def equation(...)`` of an agent's task), the parameter limit from its ``MAX_NPARAMS`` or
"at most N constants". Draws
are seeded by the call's seed, the sample's index among the ``n`` asked for and the prompt's
hash, so a run is reproducible and two seeds of a sweep do not see shifted copies of each
other's samples (the loop's seed is ``run.seed + sample index``). ``terms:MIN-MAX`` changes
the number of terms (default ``2-6``).
"""

from __future__ import annotations

import re

import numpy as np

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams
from eqforge.errors import BackendError
from eqforge.problems.entry import ENTRY, versioned
from eqforge.prompts.prompt import Prompt

DEFAULT_TERMS = (2, 6)
_HEADER = re.compile(rf"def {ENTRY}_v(\d+)\(([^)]*)\)")
_PLAIN = re.compile(rf"def {ENTRY}\(([^)]*\bparams\b[^)]*)\)")
_MAX_PARAMS = re.compile(r"MAX_NPARAMS\s*=\s*(\d+)")
_AT_MOST = re.compile(r"at most (\d+) (?:constants|of them|params)")
_UNARY = ("{u}", "{u}**2", "{u}**3", "{u}**-1", "np.sin({u})", "np.cos({u})", "np.exp({u})",
          "np.log(np.abs({u}))", "np.tanh({u})", "np.abs({u})", "{u}*np.sin({u})",
          "{u}*np.cos({u})")


def term_library(inputs: list[str]) -> list[str]:
    """Every term the backend may draw for these inputs, in a fixed order."""
    terms = [t.format(u=u) for u in inputs for t in _UNARY]
    terms += [f"{a}*{b}" for i, a in enumerate(inputs) for b in inputs[i + 1:]]
    return terms


def parse_range(arg: str) -> tuple[int, int]:
    """``""`` -> (2, 6); ``"3-5"`` -> (3, 5); ``"4"`` -> (4, 4)."""
    if not arg:
        return DEFAULT_TERMS
    lo, _, hi = arg.partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise BackendError(f"--llm terms:{arg}: give the number of terms as MIN-MAX, e.g. terms:2-6") from None
    if not 1 <= low <= high:
        raise BackendError(f"--llm terms:{arg}: need 1 <= MIN <= MAX")
    return low, high


def prompt_signature(prompt: Prompt) -> tuple[str, list[str], int | None]:
    """(function name to write, input names, MAX_NPARAMS) of the function the prompt asks for:
    ``equation_vN`` for an LLM-SR style prompt, else the last ``def equation(...)`` it shows
    (an agent's task, a conversation)."""
    text = "\n".join([prompt.completion or "", *(str(m.get("content") or "") for m in prompt.messages)])
    headers = [m for m in _HEADER.finditer(text) if int(m.group(1)) == prompt.version]
    if headers:
        name, args_text = versioned(prompt.version), headers[-1].group(2)
    else:
        plain = list(_PLAIN.finditer(text))
        if not plain:
            raise BackendError(f"terms: the prompt shows no function header to answer ({versioned(prompt.version)})")
        name, args_text = "equation", plain[-1].group(1)
    args = [a.split(":")[0].strip() for a in args_text.split(",")]
    inputs = [a for a in args if a and a != "params"]
    limit = _MAX_PARAMS.search(text) or _AT_MOST.search(text)
    return name, inputs, int(limit.group(1)) if limit else None


def random_program(inputs: list[str], name: str, rng: np.random.Generator,
                   n_terms: tuple[int, int] = DEFAULT_TERMS, max_params: int | None = None) -> str:
    library = term_library(inputs)
    high = min(n_terms[1], len(library), max_params or n_terms[1])
    low = min(n_terms[0], high)
    k = int(rng.integers(low, high + 1))
    picks = sorted(rng.choice(len(library), size=k, replace=False).tolist())
    body = " + ".join(f"params[{i}] * {library[j]}" for i, j in enumerate(picks))
    args = ", ".join(inputs)
    return (f"```python\ndef {name}({args}, params):\n"
            f"    return {body}\n```")


class TermsBackend(LLMBackend):
    """Random sums of library terms, answered as a model would answer."""

    #: one prompt at a time, so which programs a run sees never depends on timing
    max_concurrency = 1
    prompt_style = "chat"
    cacheable = False  # nothing to save: the answer is a function of the seed

    def __init__(self, arg: str = "") -> None:
        self.n_terms = parse_range(arg)
        self.name = "terms:" + (arg or f"{DEFAULT_TERMS[0]}-{DEFAULT_TERMS[1]}")
        self._fallback = np.random.default_rng(0)  # for unseeded calls

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "model": "terms", "terms": list(self.n_terms)}

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        name, inputs, max_params = prompt_signature(prompt)
        if not inputs:
            raise BackendError("terms: the prompt's function has no inputs to build terms from")
        out = []
        for i in range(sampling.n):
            if sampling.seed is None:
                rng = self._fallback
            else:
                rng = np.random.default_rng([int(sampling.seed) & 0xFFFFFFFF, i, int(prompt.hash, 16)])
            text = random_program(inputs, name, rng, self.n_terms, max_params)
            out.append(Completion(text=text, model=self.name, prompt_tokens=0, completion_tokens=0,
                                  finish_reason="stop", cost=0.0))
        return out
