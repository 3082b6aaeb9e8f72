"""Column labels as Python names: ``"Angle (rad)"`` becomes ``Angle_rad``, the label kept.

Every way of authoring a problem (a CSV, arrays, a data frame) names its variables here:
ASCII words for symbols, no keywords or reserved names, no collisions, and the unit read
from a trailing ``(unit)`` or ``[unit]`` of the label.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections.abc import Sequence

from eqforge.problems.spec import Variable
from eqforge.problems.validate import RESERVED

_SYMBOLS = {"°": "deg", "%": "pct", "µ": "mu", "Å": "angstrom", "²": "2", "³": "3", "/": "_per_",
            "+": "_plus_", "#": "num"}


def _ascii_word(ch: str) -> str:
    if ch in _SYMBOLS:
        return _SYMBOLS[ch]
    if ch.isascii():
        return ch
    decomposed = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    if decomposed:
        return decomposed
    uname = unicodedata.name(ch, "")
    m = re.match(r"GREEK (SMALL|CAPITAL) LETTER (\w+)", uname)
    if m:
        word = m.group(2).lower()
        return f"_{word if m.group(1) == 'SMALL' else word.capitalize()}_"
    return "_"


def safe_name(label: str, taken: set[str] | None = None) -> str:
    """A valid, non-reserved, unused Python identifier for a column label.

    A trailing unit in brackets is left out (it is kept as the variable's unit):
    ``"Angle (rad)"`` -> ``Angle``, ``"ω [rad/s]"`` -> ``omega``, ``"2nd"`` -> ``var_2nd``,
    ``"lambda"`` -> ``lambda_``, ``"Δx"`` -> ``Delta_x``; ``taken`` names get a ``_2``,
    ``_3`` ... suffix.
    """
    base, unit = label_defaults(str(label))
    text = "".join(_ascii_word(ch) for ch in (base if unit else str(label)).strip())
    name = re.sub(r"[^0-9A-Za-z_]+", "_", text)
    name = re.sub(r"_+", "_", name).strip("_") or "var"
    if name[0].isdigit():
        name = f"var_{name}"
    if keyword.iskeyword(name) or name in RESERVED:
        name = f"{name}_"
    taken = taken if taken is not None else set()
    base, k = name, 2
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def safe_names(labels: Sequence[str]) -> list[str]:
    """``safe_name`` for each label; names that are already fine are kept first."""
    labels = [str(x) for x in labels]
    taken: set[str] = set()
    out: list[str | None] = [None] * len(labels)
    # Labels that are already good names keep them, so "x" never becomes "x_2".
    for i, lab in enumerate(labels):
        if lab == safe_name(lab, set()) and lab not in taken:
            out[i] = lab
            taken.add(lab)
    for i, lab in enumerate(labels):
        if out[i] is None:
            out[i] = safe_name(lab, taken)
    return [str(n) for n in out]


_UNIT_RE = re.compile(r"^(.*?)\s*[\(\[]\s*([^\)\]]+?)\s*[\)\]]\s*$")


def label_defaults(label: str) -> tuple[str, str | None]:
    """Description and unit read off a column label: ``"Angle (rad)"`` -> (``Angle``, ``rad``)."""
    m = _UNIT_RE.match(label.strip())
    if m and m.group(1):
        return m.group(1).strip(), m.group(2).strip()
    return label.strip(), None


def make_variable(name: str, label: str, description: str | None = None, unit: str | None = None) -> Variable:
    """A variable whose defaults come from its column label when it was renamed."""
    desc0, unit0 = label_defaults(label) if label != name else ("", None)
    return Variable(
        name=name,
        description=description if description is not None else desc0,
        unit=unit if unit is not None else unit0,
        label=label if label != name else None,
    )
