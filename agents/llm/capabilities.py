"""What each kind of model accepts, and how to adapt when a server says otherwise.

OpenAI's reasoning models (the o-series and the GPT-5 family) reject ``max_tokens`` (they
take ``max_completion_tokens``, which also pays for hidden reasoning tokens, so it needs
headroom over the answer's length), any non-default ``temperature`` / ``top_p`` and
``stop``, each with a 400 ``Unsupported parameter`` / ``Unsupported value``. Several hosted
OpenAI-compatible APIs refuse ``n`` > 1 the same way, and vLLM answers a chat request for a
model without a chat template with a 400 saying so. A small table says what is known up
front (``capabilities_for``); ``refused_parameter`` reads a 400 for the parameter it names,
so the backend can adapt once, say so in the log and record it, instead of losing every
sample to ``llm:bad-request``.

The table (match on the model name after any ``provider/`` prefix, first match wins):

=======================  ============================  ========  ====  ========
model                    length parameter              sampling  stop  kind
=======================  ============================  ========  ====  ========
``gpt-5*-chat*``         ``max_completion_tokens``     yes       yes   chat
``o1*``, ``o3*``,        ``max_completion_tokens``     no        no    reasoning
``o4*``, ``gpt-5*``      (+ ``reasoning_headroom``)
known base models        ``max_tokens``                yes       yes   base
anything else            ``max_tokens``                yes       yes   chat
=======================  ============================  ========  ====  ========

"sampling: no" means temperature and top_p are not sent (the API accepts only 1.0); the
backend logs once that the run's settings were not applied. Known base models (no chat
template, eqforge's default model among them) get completion style under
``--prompt-style auto``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: extra completion tokens a reasoning model may spend on hidden reasoning before it answers
DEFAULT_REASONING_HEADROOM = 8192


@dataclass(frozen=True)
class Capabilities:
    length_param: str = "max_tokens"  # or "max_completion_tokens"
    sampling: bool = True  # temperature / top_p other than 1.0 accepted
    stop: bool = True
    reasoning: bool = False  # spends hidden tokens before answering
    base: bool = False  # a base model: no chat template, prompt it as raw completion

    @property
    def kind(self) -> str:
        return "reasoning" if self.reasoning else "base" if self.base else "chat"


_CHAT_LATEST = re.compile(r"^gpt-5(\.\d+)?-chat")
_REASONING = re.compile(r"^(o\d+|gpt-5)([.-]|$)")
#: base models (no chat template): Gemma 3 270M (eqforge's default), "-base" names, GPT-2
_BASE = re.compile(r"^(gemma-3-270m(?!-it)|gemma3-270m(?!-it)|.*-base(-|$)|gpt2|davinci-002|babbage-002)",
                   re.I)


def capabilities_for(model: str) -> Capabilities:
    name = model.rsplit("/", 1)[-1].lower()
    if _CHAT_LATEST.match(name):
        return Capabilities(length_param="max_completion_tokens")
    if _REASONING.match(name):
        return Capabilities(length_param="max_completion_tokens", sampling=False, stop=False, reasoning=True)
    if _BASE.match(name):
        return Capabilities(base=True)
    return Capabilities()


_PARAM_RE = re.compile(
    r"(?:unsupported (?:parameter|value)|unrecognized (?:request )?argument|not supported|invalid parameter"
    r"|extra inputs are not permitted|only supports?|must be (?:at most )?1\b)", re.I)
_QUOTED = re.compile(r"['\"`]([a-z_]+)['\"`]")
#: parameters a backend knows how to do without (or rename)
ADAPTABLE = ("max_tokens", "temperature", "top_p", "stop", "seed", "n")


def refused_parameter(message: str, param: str | None = None) -> str | None:
    """The request parameter a 400 refuses, if it names one eqforge can adapt; else None.

    Uses the error's ``param`` field when the API fills it (OpenAI does), else the first
    quoted name in a message that reads like a refusal ("Unsupported parameter: 'max_tokens'
    is not supported with this model", "'n' must be 1", "n: only n=1 is supported").
    """
    if param:
        name = param.rsplit(".", 1)[-1].strip("[]'\" ")
        if name in ADAPTABLE:
            return name
    if not _PARAM_RE.search(message) and not re.search(r"\bn\s*(?:=|must|:)", message):
        return None
    for name in _QUOTED.findall(message):
        if name in ADAPTABLE:
            return name
    m = re.match(r"^\s*([a-z_]+)\s*:", message)  # pydantic-style "n: Input should be ..."
    if m and m.group(1) in ADAPTABLE:
        return m.group(1)
    if re.search(r"\bn\s*(?:=\s*1|must be 1|>\s*1)", message) or re.search(r"\bonly n\b", message):
        return "n"
    return None


def is_missing_chat_template(message: str) -> bool:
    """vLLM's (and transformers') answer to a chat request for a model without a template."""
    text = message.lower()
    return "chat template" in text or "chat_template" in text
