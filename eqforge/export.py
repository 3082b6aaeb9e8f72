"""A fitted law as code the caller may run: numpy, JAX and PyTorch callables.

The law comes from the program's AST (``evaluator.analysis``), never from executing the
program, so these callables are safe to run in the caller's process. The conversion runs in
the analysis' helper process under a deadline (a hostile program cannot hang the caller),
and what it returns is bounded in size (nodes, float-like numbers), which bounds the
``lambdify`` here. Callers export only a *verified* law (one whose predictions match the
sandbox's on the scored rows, ``EquationRegressor`` checks that); ``law_from_program``
alone does not verify. The skeleton keeps its
constants as symbols and the fitted values are passed in at call time, which makes the
numpy form bit-faithful to the fitted params, the JAX form differentiable in its
parameters and the PyTorch module's constants trainable (``torch.nn.Parameter``), as
PySR's exports are. JAX and PyTorch are imported only when asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from eqforge.errors import EqforgeError
from eqforge.evaluator.analysis import SymbolicWorker, input_symbols
from eqforge.evaluator.analysis.worker import timeout_form

#: deadline of the conversion (retried once, four times longer)
CONVERT_TIMEOUT = 5.0


class ExportError(EqforgeError, ValueError):
    """The law cannot be exported (no closed form, or a function the target lacks)."""


@dataclass(frozen=True)
class Law:
    """A skeleton over ``inputs`` with constant symbols ``constants`` fitted to ``values``."""

    skeleton: sp.Expr
    inputs: tuple[sp.Symbol, ...]
    constants: tuple[sp.Symbol, ...]
    values: tuple[float, ...]

    text: str = ""  # the printed fitted law (printed in the helper process)

    @property
    def fitted(self) -> sp.Expr:
        return self.skeleton.xreplace({c: sp.Float(v) for c, v in zip(self.constants, self.values,
                                                                      strict=True)})


def law_from_program(program: str, input_names: list[str], params: list[float] | None,
                     ) -> Law:
    """The program's law (AST to sympy); ``ExportError`` with the reason when it has none."""
    with SymbolicWorker() as worker:
        cf = worker.call_retry("convert", program, input_names, list(params) if params else None,
                               timeout=CONVERT_TIMEOUT)
        if cf is None:
            cf = timeout_form(CONVERT_TIMEOUT * 4, worker)
    if not cf.ok or cf.skeleton is None:
        detail = (": " + cf.detail.splitlines()[0][:200]) if cf.detail else ""
        raise ExportError(f"this equation has no closed form ({cf.reason}{detail}); it can "
                          "only be evaluated in the sandbox (predict does that)")
    inputs = tuple(input_symbols(input_names)[n] for n in input_names)
    consts = sorted(cf.skeleton.free_symbols - set(inputs), key=lambda s: _index(s))
    values = []
    for c in consts:
        i = _index(c)
        if params is None or i >= len(params):
            raise ExportError(f"constant {c} has no fitted value")
        values.append(float(params[i]))
    return Law(cf.skeleton, inputs, tuple(consts), tuple(values), cf.text)


def _index(s: sp.Symbol) -> int:
    core = s.name.lstrip("_")
    return int(core[1:]) if core.startswith("c") and core[1:].isdigit() else 10**9


def _columns(X: Any, d: int) -> list[Any]:
    return [X[:, j] for j in range(d)]


# -- numpy -----------------------------------------------------------------------------------


def numpy_callable(law: Law) -> Callable[[np.ndarray], np.ndarray]:
    """``f(X) -> y`` for an (n, d) float array."""
    fn = sp.lambdify([*law.inputs, *law.constants], law.skeleton, modules="numpy")
    values = law.values
    d = len(law.inputs)

    def f(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = fn(*_columns(X, d), *values)
        return np.broadcast_to(np.asarray(out, dtype=np.float64), (X.shape[0],)).copy()

    return f


# -- JAX -------------------------------------------------------------------------------------


def jax_export(law: Law) -> dict[str, Any]:
    """PySR's shape: ``{"callable": f(X, parameters), "parameters": array}``, jitted."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise ExportError("JAX is not installed; `pip install jax jaxlib` to export to JAX") from None
    fn = sp.lambdify([*law.inputs, *law.constants], law.skeleton, modules="jax")
    d = len(law.inputs)

    def f(X: Any, parameters: Any) -> Any:
        X = jnp.asarray(X)
        out = fn(*_columns(X, d), *[parameters[i] for i in range(len(law.constants))])
        return jnp.broadcast_to(out, (X.shape[0],))

    return {"callable": jax.jit(f), "parameters": jnp.asarray(law.values, dtype=jnp.float64
                                                              if jax.config.jax_enable_x64
                                                              else jnp.float32)}


# -- PyTorch ---------------------------------------------------------------------------------


def _torch_ops() -> dict[type, Callable[..., Any]]:
    import torch

    def fold(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        return lambda *a: functools.reduce(fn, a)

    def piecewise(*pairs: tuple[Any, Any]) -> Any:
        out = pairs[-1][0]
        for value, cond in reversed(pairs[:-1]):
            out = torch.where(cond, value, out)
        return out

    return {
        sp.sin: torch.sin, sp.cos: torch.cos, sp.tan: torch.tan, sp.asin: torch.asin,
        sp.acos: torch.acos, sp.atan: torch.atan, sp.sinh: torch.sinh, sp.cosh: torch.cosh,
        sp.tanh: torch.tanh, sp.asinh: torch.asinh, sp.acosh: torch.acosh,
        sp.atanh: torch.atanh, sp.exp: torch.exp, sp.log: torch.log, sp.Abs: torch.abs,
        sp.sign: torch.sign, sp.floor: torch.floor, sp.ceiling: torch.ceil, sp.erf: torch.erf,
        sp.erfc: torch.erfc, sp.loggamma: torch.lgamma, sp.atan2: torch.atan2,
        sp.Max: fold(torch.maximum), sp.Min: fold(torch.minimum),
        sp.Heaviside: lambda a, b=None: torch.heaviside(a, torch.as_tensor(0.5 if b is None
                                                                            else b).to(a)),
        sp.Piecewise: piecewise,
        sp.StrictGreaterThan: torch.gt, sp.GreaterThan: torch.ge,
        sp.StrictLessThan: torch.lt, sp.LessThan: torch.le,
    }


def torch_module(law: Law) -> Any:
    """A ``torch.nn.Module``: ``module(X)`` for an (n, d) tensor; ``module.constants`` is
    the trainable vector of fitted constants."""
    try:
        import torch
    except ImportError:
        raise ExportError("PyTorch is not installed; `pip install torch` to export to PyTorch") from None
    ops = _torch_ops()

    class LawModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.constants = torch.nn.Parameter(torch.tensor(law.values, dtype=torch.float64))
            self.expression = law.text
            self._index = {s: i for i, s in enumerate(law.inputs)}
            self._consts = {s: i for i, s in enumerate(law.constants)}

        def forward(self, X: Any) -> Any:
            X = torch.as_tensor(X)
            dtype = X.dtype if X.is_floating_point() else torch.float64
            X = X.to(dtype)
            out = self._eval(law.skeleton, X)
            out = torch.as_tensor(out, dtype=dtype)
            return out.expand(X.shape[0]) if out.dim() == 0 else out

        def _eval(self, e: sp.Basic, X: Any) -> Any:
            if e in self._index:
                return X[:, self._index[e]]
            if e in self._consts:
                return self.constants[self._consts[e]].to(X.dtype)
            if e.is_Number or e.is_NumberSymbol:
                return torch.tensor(float(e), dtype=X.dtype)
            args = [self._eval(a, X) for a in e.args]
            if e.is_Add:
                return functools.reduce(lambda a, b: a + b, args)
            if e.is_Mul:
                return functools.reduce(lambda a, b: a * b, args)
            if e.is_Pow:
                return torch.pow(args[0], args[1])
            if isinstance(e, sp.Piecewise):
                return ops[sp.Piecewise](*[(self._eval(v, X), self._cond(c, X))
                                           for v, c in e.args])
            fn = ops.get(e.func)
            if fn is None:
                raise ExportError(f"{e.func.__name__} has no PyTorch equivalent here")
            return fn(*args)

        def _cond(self, c: sp.Basic, X: Any) -> Any:
            if c is sp.true:
                return torch.ones(X.shape[0], dtype=torch.bool)
            fn = ops.get(type(c))
            if fn is None:
                raise ExportError(f"condition {c} has no PyTorch equivalent here")
            return fn(*[torch.as_tensor(self._eval(a, X), dtype=X.dtype) for a in c.args])

        def extra_repr(self) -> str:
            return self.expression

    module = LawModule()
    module(torch.zeros((1, len(law.inputs)), dtype=torch.float64))  # unsupported functions fail here
    return module
