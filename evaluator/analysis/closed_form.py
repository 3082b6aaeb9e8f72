"""A program's closed form: skeleton, fitted constants, rounded display, complexity."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from eqforge.evaluator.analysis.complexity import complexity
from eqforge.evaluator.analysis.functions import SIG_DIGITS, NotConvertible, bounded
from eqforge.evaluator.analysis.skeleton import to_sympy

UNVERIFIED_TEXT = "[unverified] "
PARTS = ("text", "skeleton_text", "latex", "skeleton_latex", "mathml")
#: True in the helper process, the one place that runs sympy's printers (see ``worker``)
PRINT_HERE = False
#: prints a closed form elsewhere (``worker`` installs its helper process here on import)
RENDERER: Callable[[ClosedForm], dict[str, str]] | None = None
UNVERIFIED_LATEX = r"\mathrm{[unverified]}\; "


@dataclass
class ClosedForm:
    """A program's closed form, or why it has none."""

    ok: bool
    reason: str | None = None
    detail: str = ""
    skeleton: sp.Expr | None = None
    fitted: sp.Expr | None = None  # constants substituted (full precision)
    display: sp.Expr | None = None  # constants rounded to SIG_DIGITS for printing
    constants: dict[str, float] = field(default_factory=dict)
    complexity: int | None = None
    simplified: bool = False
    #: printed forms, filled by ``render`` in the helper process (``worker``) so that the
    #: caller never runs sympy's printers on a candidate's expression itself
    rendered: dict[str, str] = field(default_factory=dict)
    #: ``laws.law_key`` of the skeleton, computed beside the printing
    law: str | None = None

    def _printed(self, what: str) -> str:
        """A printed form: rendered already, or now in the helper process (in this process
        only inside the helper itself, ``PRINT_HERE``)."""
        if what not in self.rendered and self.ok:
            if PRINT_HERE or RENDERER is None:
                self.render()
            else:
                self.rendered = {**RENDERER(self), **self.rendered}
        return self.rendered.get(what, "")

    @property
    def text(self) -> str:
        return self._printed("text")

    @property
    def skeleton_text(self) -> str:
        return self._printed("skeleton_text")

    @property
    def latex(self) -> str:
        return self._printed("latex")

    @property
    def skeleton_latex(self) -> str:
        return self._printed("skeleton_latex")

    def mathml(self) -> str:
        return self._printed("mathml")

    def mark_unverified(self) -> None:
        """Prefix every printed form with ``[unverified]``: this closed form does not
        reproduce the scored program (``verify``), so nothing may show it as the law
        unmarked. Idempotent."""
        if not self.ok or self.unverified:
            return
        text, latex, mathml = self.text, self.latex, self.mathml()
        r = self.rendered
        r["text"] = UNVERIFIED_TEXT + text
        r["latex"] = UNVERIFIED_LATEX + latex
        r["mathml"] = f"<mrow><mtext>[unverified]</mtext><mspace width='0.5em'/>{mathml}</mrow>"

    @property
    def unverified(self) -> bool:
        return self.rendered.get("text", "").startswith(UNVERIFIED_TEXT)

    def render(self, parts: tuple[str, ...] = PARTS) -> ClosedForm:
        """Print ``parts`` once (run where a deadline guards it: the helper process)."""
        if self.ok:
            printers = {"text": lambda: _sstr(self.display),
                        "skeleton_text": lambda: _sstr(self.skeleton),
                        "latex": lambda: sp.latex(self.display),
                        "skeleton_latex": lambda: sp.latex(self.skeleton),
                        "mathml": lambda: _mathml(self.display)}
            for part in parts:
                if part not in self.rendered:
                    self.rendered[part] = printers[part]()
        return self

    def to_json(self) -> dict[str, Any]:
        if not self.ok:
            return {"convertible": False, "reason": self.reason, "detail": self.detail}
        return {
            "convertible": True,
            "equation": self.text,
            "latex": self.latex,
            "skeleton": self.skeleton_text,
            "skeleton_latex": self.skeleton_latex,
            "constants": self.constants,
            "complexity": self.complexity,
            "simplified": self.simplified,
        }


def _sstr(e: sp.Basic | None) -> str:
    return sp.sstr(e, full_prec=False) if e is not None else ""


def _mathml(e: sp.Basic | None) -> str:
    return sp.mathml(e, printer="presentation") if e is not None else ""


def round_sig(value: float, digits: int = SIG_DIGITS) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def rounded(expr: sp.Expr, digits: int = SIG_DIGITS) -> sp.Expr:
    """Floats rounded to ``digits`` significant digits; whole numbers become integers."""
    repl: dict[sp.Basic, sp.Basic] = {}
    for f in expr.atoms(sp.Float):
        r = round_sig(float(f), digits)
        repl[f] = sp.Integer(int(r)) if r.is_integer() and abs(r) < 1e15 else sp.Float(r)
    return expr.xreplace(repl) if repl else expr


def fill_constants(skeleton: sp.Expr, params: list[float] | None) -> tuple[sp.Expr,
                                                                         dict[str, float]]:
    consts = sorted((s for s in skeleton.free_symbols if _const_index(s) is not None),
                    key=lambda s: _const_index(s) or 0)
    values: dict[str, float] = {}
    repl = {}
    for s in consts:
        i = _const_index(s)
        assert i is not None
        if params is None or i >= len(params) or params[i] is None:
            continue
        values[s.name.lstrip("_")] = float(params[i])
        repl[s] = sp.Float(float(params[i]))
    return skeleton.xreplace(repl), values


def _const_index(s: sp.Basic) -> int | None:
    name = getattr(s, "name", "")
    core = name.lstrip("_")
    if core.startswith("c") and core[1:].isdigit():
        return int(core[1:])
    return None


def closed_form(code: str, input_names: list[str], params: list[float] | None = None, *,
                simplify: bool = False) -> ClosedForm:
    """Convert ``code`` (with fitted ``params``) in-process. ``simplify`` is unbounded in
    time here; use ``SymbolicWorker`` for a deadline."""
    try:
        skeleton = to_sympy(code, input_names, n_params=len(params) if params else None)
        cf = _finish(skeleton, params)
    except NotConvertible as exc:
        return ClosedForm(ok=False, reason=exc.reason, detail=exc.detail)
    return simplified(cf, params) if simplify else cf


def _finish(skeleton: sp.Expr, params: list[float] | None, *, was_simplified: bool = False,
            ) -> ClosedForm:
    fitted, consts = fill_constants(skeleton, params)
    return ClosedForm(ok=True, skeleton=skeleton, fitted=fitted, display=rounded(fitted),
                      constants=consts, complexity=complexity(skeleton),
                      simplified=was_simplified)


#: simplification is attempted only on skeletons of at most this many operations
#: (``sympy.count_ops``): a budget in work, not seconds, so whether a form is simplified
#: never depends on the machine's load
MAX_SIMPLIFY_OPS = 60


def simplified(cf: ClosedForm, params: list[float] | None) -> ClosedForm:
    """``sympy.simplify`` of the skeleton, kept when it has fewer nodes than before.

    Only the displayed form changes: ``complexity`` remains the node count of the program
    as written, so it does not depend on whether simplification finished in time. Skeletons
    over ``MAX_SIMPLIFY_OPS`` operations are left as written."""
    if not cf.ok or cf.skeleton is None:
        return cf
    try:
        if sp.count_ops(cf.skeleton) > MAX_SIMPLIFY_OPS:
            return cf
        s = bounded(sp.simplify(cf.skeleton))
        if complexity(s) < (cf.complexity or 0):
            out = _finish(s, params, was_simplified=True)
            out.complexity = cf.complexity  # complexity stays that of the program as written
            return out
    except NotConvertible:
        pass
    return cf
