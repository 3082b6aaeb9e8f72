"""Where a fitted program errs: a compact, numeric residual diagnosis for prompts and tools.

Deliberate Evolution and SR-Scientist show that models propose much better terms when told
*where* the current equation is wrong, not only how much. This module turns a program's
training predictions (returned by the sandbox, scored here) and the training data into a
few lines of text: residual mean and spread per quantile bin of each input, and the
correlation of the residual with each input and a few transforms of it. It runs in the
trusted process on arrays only; no candidate code is executed here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: transforms of an input whose correlation with the residual hints at a missing term
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "{}": lambda x: x,
    "{}**2": lambda x: x * x,
    "{}**3": lambda x: x * x * x,
    "abs({})": np.abs,
    "sin({})": np.sin,
    "cos({})": np.cos,
}


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return None
    a, b = a[ok], b[ok]
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0 or not np.isfinite(sa * sb):
        return None
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def diagnose(X: np.ndarray, y: np.ndarray, pred: np.ndarray, names: list[str],
             bins: int = 4) -> dict:
    """Residual statistics of ``pred`` against ``y`` on inputs ``X`` (n, d)."""
    X = np.asarray(X, float)
    r = np.asarray(y, float) - np.asarray(pred, float)
    var = float(np.var(y)) or 1.0
    out: dict = {"nmse": float(np.mean(r * r) / var), "residual_std": float(np.std(r)),
                 "target_std": float(np.std(y)), "inputs": {}}
    with np.errstate(all="ignore"):
        for j, name in enumerate(names):
            x = X[:, j]
            edges = np.quantile(x, np.linspace(0, 1, bins + 1))
            idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
            means = [float(r[idx == b].mean()) if np.any(idx == b) else None for b in range(bins)]
            stds = [float(r[idx == b].std()) if np.any(idx == b) else None for b in range(bins)]
            corr = {t.format(name): _corr(r, f(x)) for t, f in TRANSFORMS.items()}
            out["inputs"][name] = {"bin_mean": means, "bin_std": stds, "corr": corr}
        out["corr_prediction"] = _corr(r, np.asarray(pred, float))
    return out


def _num(v: float | None, fmt: str = "{:+.3g}") -> str:
    return "n/a" if v is None or not np.isfinite(v) else fmt.format(v)


def format_diagnosis(d: dict, label: str) -> str:
    """A few plain lines (no problem wording beyond the names given to ``diagnose``)."""
    lines = [f"Residuals (target - prediction) of {label} on the training data: "
             f"NMSE {_num(d['nmse'], '{:.3g}')}, residual std {_num(d['residual_std'], '{:.3g}')}"
             f" (target std {_num(d['target_std'], '{:.3g}')})"]
    for name, s in d["inputs"].items():
        lines.append(f"by quantile of {name} (low to high): mean "
                     + " ".join(_num(v) for v in s["bin_mean"]) + " | std "
                     + " ".join(_num(v, "{:.3g}") for v in s["bin_std"]))
        top = sorted(((k, v) for k, v in s["corr"].items() if v is not None),
                     key=lambda kv: -abs(kv[1]))
        lines.append(f"correlation of the residual with {name}: "
                     + ", ".join(f"{k} {v:+.2f}" for k, v in top))
    lines.append(f"correlation of the residual with the prediction: {_num(d['corr_prediction'], '{:+.2f}')}")
    return "\n".join(lines)
