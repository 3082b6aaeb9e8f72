"""Drafting variable descriptions and units with an LLM: the question and reading the answer.

``eqforge new --llm ...`` asks a model to describe each column of the user's table (from their
paragraph, the headers and summary statistics) and reads the answer leniently: JSON in code
fences or prose, several answer shapes, keys by safe name or original header. The model is
just a ``complete(text) -> str`` callable here, so this module imports no backend;
``eqforge.agents.drafting.as_complete`` turns a backend into one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

DRAFT_SYSTEM = (
    "You help scientists describe their data sets. You answer with JSON only and never add "
    "or remove variables."
)

DRAFT_TEMPLATE = """A scientist describes an experiment and a data table.

Their description (verbatim):
\"\"\"{description}\"\"\"

The table has these columns (safe name, original header, summary statistics):
{columns}

The column to be modelled (the output) is `{target}`.

For every column above, write a short description of the physical quantity (one phrase,
as it would appear in "a numpy array representing observations of ...") and its unit
(SI symbol, or "dimensionless"; null if it cannot be told). Use only the columns listed;
do not invent new ones. Answer with JSON only, in this form:
{{"variables": [{{"name": "<safe name>", "description": "...", "unit": "..."}}]}}
"""


def summarize(data: np.ndarray, labels: Sequence[str], names: Sequence[str]) -> list[dict[str, Any]]:
    """Per-column summary statistics, for the drafting prompt and for ``describe``."""
    out = []
    for j, (lab, nm) in enumerate(zip(labels, names, strict=True)):
        col = data[:, j]
        out.append({
            "name": nm, "label": lab, "min": float(np.min(col)), "max": float(np.max(col)),
            "mean": float(np.mean(col)), "std": float(np.std(col)), "distinct": int(len(np.unique(col))),
        })
    return out


def draft_prompt(description: str, table: list[dict[str, Any]], target: str) -> str:
    lines = []
    for c in table:
        header = f" (header: {c['label']!r})" if c["label"] != c["name"] else ""
        lines.append(
            f"- `{c['name']}`{header}: min {c['min']:.6g}, max {c['max']:.6g}, mean {c['mean']:.6g}, "
            f"std {c['std']:.6g}, {c['distinct']} distinct values"
        )
    return DRAFT_TEMPLATE.format(description=description.strip(), columns="\n".join(lines), target=target)


def _json_candidates(text: str) -> list[Any]:
    """Every JSON object or array found in ``text``: fenced blocks first, then the rest."""
    found: list[Any] = []
    blocks = re.findall(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", text[:200_000], flags=re.S)
    decoder = json.JSONDecoder()
    attempts = 0  # a model's answer is untrusted: bounded work, and no error escapes
    for chunk in [*blocks[:20], text]:
        chunk = chunk.strip()
        try:
            found.append(json.loads(chunk))
            continue
        except (ValueError, RecursionError):  # JSONDecodeError, 5000-digit ints, deep nesting
            pass
        i = 0
        while i < len(chunk) and attempts < 200:
            if chunk[i] in "{[":
                attempts += 1
                try:
                    obj, end = decoder.raw_decode(chunk, i)
                except (ValueError, RecursionError):
                    i += 1
                    continue
                found.append(obj)
                i = end
            else:
                i += 1
    return found


def _entries(obj: Any) -> list[tuple[str, Any]]:
    """Normalise the shapes a model may answer with into (key, value) pairs."""
    if isinstance(obj, dict):
        for key in ("variables", "columns", "inputs"):
            if isinstance(obj.get(key), list | dict):
                pairs = _entries(obj[key])
                out = obj.get("output") or obj.get("target")
                if isinstance(out, dict):
                    pairs += _entries([out])
                return pairs
        return [(str(k), v) for k, v in obj.items()]
    if isinstance(obj, list):
        pairs = []
        for item in obj:
            if isinstance(item, dict):
                name = item.get("name") or item.get("column") or item.get("variable") or item.get("label")
                if name is not None:
                    pairs.append((str(name), item))
        return pairs
    return []


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def parse_draft(
    text: str, names: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, dict[str, str | None]]:
    """Read a model's answer into ``{safe name: {"description", "unit"}}``.

    Tolerates code fences and prose around the JSON and several answer shapes; keys may be
    the safe name or the original header (case-insensitively). Columns the model invented
    are ignored; columns it left out are absent from the result.
    """
    labels = list(labels) if labels is not None else list(names)
    lookup: dict[str, str] = {}
    for nm, lab in zip(names, labels, strict=True):
        for key in (nm, lab):
            lookup.setdefault(key, nm)
            lookup.setdefault(key.strip().lower(), nm)
    result: dict[str, dict[str, str | None]] = {}
    for obj in _json_candidates(text):
        for key, value in _entries(obj):
            found = lookup.get(key) or lookup.get(key.strip().lower()) or lookup.get(key.strip("` ").lower())
            if found is None or found in result:
                continue
            if isinstance(value, dict):
                desc = _clean(value.get("description") or value.get("desc") or value.get("meaning"))
                unit = _clean(value.get("unit") if "unit" in value else value.get("units"))
            elif isinstance(value, str):
                desc, unit = _clean(value), None
            else:
                continue
            if unit is not None and unit.lower() in ("null", "none", "unknown", "n/a", "?"):
                unit = None
            result[found] = {"description": desc, "unit": unit}
        if result:
            break
    return result


def draft_variables(
    llm: Callable[[str], str], description: str, data: np.ndarray, labels: Sequence[str],
    names: Sequence[str], target: str,
) -> tuple[dict[str, dict[str, str | None]], str]:
    """Ask the model for descriptions and units; returns (parsed draft, raw answer)."""
    complete = llm
    table = summarize(data, labels, names)
    answer = complete(draft_prompt(description, table, target))
    return parse_draft(answer or "", names, labels), answer or ""
