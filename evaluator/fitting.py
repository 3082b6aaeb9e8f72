"""Fitting a program's constants to the training data.

Two procedures:

* ``llmsr`` — LLM-SR's exact procedure, kept for fair comparisons and ablations:
  ``minimize(lambda p: np.mean((equation(*X.T, p) - y)**2), [1.0]*10, method='BFGS')``,
  i.e. BFGS with finite-difference gradients from ones over all declared params.
* ``default`` — only the params the program reads are fitted, by least squares:

  1. *Affine params are found numerically.* The program is a black box, but most candidate
     equations are sums of terms ``params[j] * g(x, other params)``. Each used param is
     tested for affinity, and the affine set is checked jointly at two points. Affine
     params are then solved for exactly by linear least squares at any value of the others
     (variable projection), so the nonlinear search runs only over the remaining params and
     every point it visits has its affine constants at their best.
  2. *Multi-start on a subsample.* Many starts — ones (LLM-SR's start), the parent's fitted
     values for shared indices, zeros, log-uniform random scales with random signs, and
     one-coordinate sweeps of ±50% around ones and the parent (oscillation frequencies have
     basins a few percent wide) — are screened by their projected loss on a few hundred
     rows. Levenberg–Marquardt then runs from the most promising few and from ones over all
     used params at once (roughly LLM-SR's path, whose minimum is sometimes a different
     one), stopping early once two runs agree.
  3. *Polish on all rows.* The distinct minima are re-ranked on a larger subsample (a few
     thousand rows) and the best (both, on a near tie) is polished there, then on the full
     training split. If it is not finite on every row (the subsample can miss the rows
     where, say, a power of a negative input is NaN), the others and ones are tried until
     one is. Should the program turn out not to be affine where it seemed, a plain
     least-squares fit of all used params finishes the job; BFGS on the mean squared error
     is the last resort when least squares cannot run at all.

  Non-finite predictions (overflowing exponentials, logs of negatives, powers of negative
  bases) are penalised residuals rather than errors, and a finite difference that steps
  into a non-finite region gives a zero derivative, so a fit is never ended by them.

  When the runner supplies ``model_many``, many parameter vectors are evaluated in one
  call of the program (inputs as columns, ``params[i]`` as rows: plain numpy broadcasting),
  which removes most of the per-call overhead; programs that do not broadcast so, or give
  different values that way, are evaluated one vector at a time.

This module runs inside the sandbox child; the reported score is recomputed by trusted code
from the predictions on the full training split.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _lean_optimizers() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``least_squares`` and ``minimize`` without ``scipy.optimize``'s package ``__init__``,
    which imports every solver (linprog, shgo, ... and scipy.linalg's interpolative, fft,
    special): about 40% of the zygote's import time, paid per command. The package is
    stood in for only while the two modules load, then removed, so a later
    ``import scipy.optimize`` runs the real ``__init__`` (reusing the loaded submodules).
    Any surprise (another scipy layout) falls back to the plain import."""
    import importlib.util
    import sys
    import types

    if "scipy.optimize" not in sys.modules:
        stub = None
        try:
            import scipy  # noqa: F401 - the parent package, whose __init__ is light

            spec = importlib.util.find_spec("scipy.optimize")
            if spec is not None and spec.submodule_search_locations:
                stub = types.ModuleType("scipy.optimize")
                stub.__path__ = list(spec.submodule_search_locations)
                stub.__spec__ = spec
                sys.modules["scipy.optimize"] = stub
                from scipy.optimize._optimize import OptimizeResult

                stub.OptimizeResult = OptimizeResult  # type: ignore[attr-defined]
                from scipy.optimize._lsq.least_squares import least_squares as lsq
                from scipy.optimize._minimize import minimize as mini

                return lsq, mini
        except Exception:  # noqa: BLE001 - fall back to the documented import below
            pass
        finally:
            if stub is not None and sys.modules.get("scipy.optimize") is stub:
                del sys.modules["scipy.optimize"]
                import scipy as _scipy

                if vars(_scipy).get("optimize") is stub:  # not getattr: scipy's lazy
                    delattr(_scipy, "optimize")  # __getattr__ would import the package
    from scipy.optimize import least_squares as lsq
    from scipy.optimize import minimize as mini

    return lsq, mini


least_squares, minimize = _lean_optimizers()

Model = Callable[[np.ndarray], np.ndarray]  # full params vector -> predictions
RowModel = Callable[[np.ndarray, np.ndarray | None], np.ndarray]  # (params, rows | None) -> (m,)
# (params (B, n_params), rows | None) -> predictions (B, m), or None when it cannot batch
ManyModel = Callable[[np.ndarray, np.ndarray | None], np.ndarray | None]

_EPS = np.finfo(float).eps
_CLIP = 1e100  # residuals are clipped here so that their squares stay finite
_RIDGE = 1e-12  # on the unit-scaled normal equations while searching
_BATCH_ELEMENTS = 1 << 21  # most predictions computed in one batched call


@dataclass
class FitResult:
    params: np.ndarray
    loss: float
    nfev: int = 0
    starts: int = 0
    method: str = ""
    notes: list[str] = field(default_factory=list)


def _mse(pred: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        value = float(np.mean((pred - y) ** 2))
    return value if np.isfinite(value) else np.inf


def fit_llmsr(model: Model, y: np.ndarray, n_params: int) -> FitResult:
    """LLM-SR: ``minimize(lambda p: np.mean((equation(*X.T, p) - y)**2), [1.0]*10, method='BFGS')``."""
    count = [0]

    def loss(p: np.ndarray) -> float:
        count[0] += 1
        with np.errstate(all="ignore"):
            return float(np.mean((model(p) - y) ** 2))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(loss, [1.0] * n_params, method="BFGS")
    return FitResult(np.asarray(res.x, float), float(res.fun), count[0], 1, "llmsr-bfgs")


@dataclass(frozen=True)
class FitOptions:
    n_params: int = 10
    indices: tuple[int, ...] | None = None  # params to fit; None: all n_params
    seed: int = 0
    time_budget: float = 10.0  # seconds for the whole fit (checked between evaluations)
    subsample: int | None = 300  # search on at most this many rows, polish on all
    screen_rows: int | None = 150  # rows the starts are screened on
    anchors: tuple[int, ...] = ()  # rows every subsample keeps (each input's extremes)
    parent: dict[int, float] | None = None  # a parent's fitted values, by param index
    screen: int = 48  # random starts screened
    sweep: int = 101  # points of the ±50% one-coordinate sweeps, shared by the free params
    starts: int = 3  # most projected LM runs on the subsample (ones and the parent always run)
    agree_rtol: float = 1e-6  # two runs agree when their losses are this close (relative)
    agree_atol: float = 1e-12  # ... or this close relative to var(y) (exact fits, loss ~ 0)
    explore_tol: float = 1e-8  # LM tolerances on the subsample
    explore_iters: int = 4  # LM evaluations per free param (+1) on the subsample
    polish_tol: float = 1e-10  # LM tolerances when polishing
    polish_iters: int = 3  # LM evaluations per free param (+1) when polishing ...
    polish_min: int = 20  # ... and at least this many
    polish_rows: int | None = 2000  # with over twice this many rows, polish on this many first ...
    final_iters: int = 2  # ... then LM evaluations per free param (+1) on all rows
    runner_up: float = 3.0  # distinct minima within this factor of the best are re-ranked on all rows
    tie: float = 0.01  # ... and the second there is polished too when this close (relative)
    ones_basin: bool = True  # always polish LLM-SR's own start (ones) on all rows too (off: ablation)
    speculate: bool = True  # on subsamples, evaluate each point's Jacobian steps with its residuals


class _OutOfTime(Exception):
    pass


class _Projected:
    """Residuals of a program on some rows, with its affine params solved out exactly.

    ``free`` are positions (into the used-params vector) searched by LM, ``lin`` the affine
    ones. ``residuals(theta)`` solves the linear least-squares problem for ``lin`` at
    ``theta`` (ridge-stabilised normal equations on unit-scaled columns, or an SVD when
    ``exact``). Non-finite residuals become ``penalty``. Callers silence numpy's
    floating-point warnings around all of this.
    """

    def __init__(self, model: RowModel, model_many: ManyModel | None, y: np.ndarray,
                 rows: np.ndarray | None, full: np.ndarray, idx: np.ndarray, lin: np.ndarray,
                 penalty: float, deadline: float, exact: bool = False) -> None:
        self.model = model
        self.model_many = model_many
        self.rows = rows
        self.y = y if rows is None else y[rows]
        self.full = full
        self.idx = idx
        self.lin = lin
        self.free = np.setdiff1d(np.arange(idx.size), lin)
        self.penalty = penalty
        self.deadline = deadline
        self.exact = exact
        self.nfev = 0
        self._cache: tuple[bytes, tuple] | None = None
        self.model_each: ManyModel | None = None  # many vectors, each evaluated on its own, in one call
        # On small row sets, the residuals' program call also evaluates the forward-difference
        # steps the Jacobian at that point will need: one round trip to the candidate's
        # process per LM iteration instead of two (``speculate``).
        self.speculate = False
        self._steps: tuple[bytes, np.ndarray, np.ndarray] | None = None  # (theta, designs (f, L+1, m), h)
        self._steps_base = np.empty(0)

    # evaluating the program ------------------------------------------------------------
    def _tick(self, count: int) -> None:
        if time.perf_counter() > self.deadline:
            raise _OutOfTime
        self.nfev += count

    def predict(self, p: np.ndarray) -> np.ndarray:
        """Predictions at used-params vector ``p`` (non-finite allowed)."""
        self._tick(1)
        full = self.full.copy()
        full[self.idx] = p
        return self.model(full, self.rows)

    def predict_many(self, P: np.ndarray) -> np.ndarray:
        """Predictions (B, m) at used-params vectors ``P`` (B, k)."""
        B = P.shape[0]
        if (self.model_many is None or B < 2) and self.model_each is not None and B >= 2:
            # one call, one vector at a time inside it (no broadcasting): one round trip
            self._tick(B)
            full = np.repeat(self.full[None, :], B, axis=0)
            full[:, self.idx] = P
            return self.model_each(full, self.rows)
        if self.model_many is None or B < 2:
            return np.stack([self.predict(p) for p in P]) if B else np.empty((0, self.y.size))
        step = max(2, _BATCH_ELEMENTS // max(1, self.y.size))
        if B > step:
            return np.concatenate([self.predict_many(P[i:i + step]) for i in range(0, B, step)])
        self._tick(B)
        full = np.repeat(self.full[None, :], B, axis=0)
        full[:, self.idx] = P
        out = self.model_many(full, self.rows)
        if out is None:
            self.model_many = None
            self.nfev -= B
            return self.predict_many(P)
        return out

    def expand(self, theta: np.ndarray, c: np.ndarray) -> np.ndarray:
        p = np.empty(self.idx.size)
        p[self.free] = theta
        p[self.lin] = c
        return p

    def _design(self, thetas: np.ndarray) -> np.ndarray:
        """For each theta (T, f): the params with affine ones at 0, then each at 1 alone."""
        T, L = thetas.shape[0], self.lin.size
        P = np.zeros((T, L + 1, self.idx.size))
        P[:, :, self.free] = thetas[:, None, :]
        if L:
            P[:, np.arange(1, L + 1), self.lin] = 1.0
        return P.reshape(T * (L + 1), self.idx.size)

    # the projected problem ---------------------------------------------------------------
    def _state(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple | None]:
        """(c, cleaned residuals, rows where finite, what ``jacobian`` projects with)."""
        key = theta.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        L = self.lin.size
        proj = None
        f = theta.size
        if self.speculate and f and self.model_many is not None:
            h = self._step(theta)
            thetas = np.repeat(theta[None, :], f + 1, axis=0)
            thetas[np.arange(1, f + 1), np.arange(f)] += h
            F_all = self.predict_many(self._design(thetas)).reshape(f + 1, L + 1, -1)
            F = F_all[0]
            self._steps = (key, F_all[1:], h)
        else:
            F = self.predict_many(self._design(theta[None, :]))
        if L == 0:
            c = np.empty(0)
            r = F[0] - self.y
            self._steps_base = F[0]
        else:
            g0 = F[0]
            Gt = F[1:] - g0  # each affine param's column, as rows
            b = self.y - g0
            ok = np.isfinite(b + Gt.sum(axis=0))
            c = np.zeros(L)
            every = bool(ok.all())
            if every or ok.any():
                G = Gt.T
                c, proj = self._linear(G if every else G[ok], b if every else b[ok])
                if proj is not None:
                    proj = (None if every else ok, *proj)
            r = c @ Gt - b
        if self._steps is not None and self._steps[0] == key:
            self._steps_base = r + self.y  # the predictions at (theta, c), as the steps see them
        ok = np.isfinite(r)
        if not ok.all():
            r = np.where(ok, r, self.penalty)
        np.clip(r, -_CLIP, _CLIP, out=r)
        state = (c, r, ok, proj)
        self._cache = (key, state)
        return state

    def _linear(self, A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple | None]:
        """Least-squares ``c`` for ``A c ~ b``, and what ``jacobian`` projects off A with."""
        L = A.shape[1]
        gram = A.T @ A
        d = np.sqrt(gram.diagonal())
        d[~np.isfinite(d) | (d == 0)] = 1.0
        if not self.exact:
            scaled = gram / np.outer(d, d)
            scaled.flat[:: L + 1] += _RIDGE
            try:
                c = np.linalg.solve(scaled, (A.T @ b) / d) / d
                if np.isfinite(c).all():
                    return c, ("ne", A, scaled, d)
            except (np.linalg.LinAlgError, ValueError):
                pass
        try:
            u, sv, vt = np.linalg.svd(A / d, full_matrices=False)
            keep = sv > sv[0] * max(A.shape) * _EPS if sv.size and sv[0] > 0 else sv > 0
            u = u[:, keep]
            c = (vt[keep].T @ ((u.T @ b) / sv[keep])) / d
            if np.isfinite(c).all():
                return c, ("svd", u)
        except (np.linalg.LinAlgError, ValueError):
            pass
        return np.zeros(L), None

    def solve(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best affine params at ``theta`` and the resulting (cleaned) residuals."""
        c, r, _, _ = self._state(theta)
        return c, r

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        return self._state(theta)[1]

    def loss(self, theta: np.ndarray) -> float:
        r = self.residuals(theta)
        return float(np.mean(r * r))

    def losses(self, thetas: np.ndarray) -> np.ndarray:
        """Projected losses of many thetas (T, f), in as few program calls as possible."""
        T, L, m = thetas.shape[0], self.lin.size, self.y.size
        step = max(1, _BATCH_ELEMENTS // max(1, m * (L + 1)))
        out = np.empty(T)
        for s in range(0, T, step):
            chunk = thetas[s:s + step]
            F = self.predict_many(self._design(chunk)).reshape(chunk.shape[0], L + 1, m)
            g0 = F[:, 0]
            b = self.y - g0
            if L:
                Gt = F[:, 1:] - g0[:, None, :]
                ok = np.isfinite(b + Gt.sum(axis=1))
                Gt = np.where(ok[:, None, :], Gt, 0.0)
                b = np.where(ok, b, 0.0)
                gram = Gt @ Gt.transpose(0, 2, 1)
                d = np.sqrt(np.einsum("tii->ti", gram))
                d[~np.isfinite(d) | (d == 0)] = 1.0
                scaled = gram / (d[:, :, None] * d[:, None, :]) + _RIDGE * np.eye(L)
                try:
                    c = np.linalg.solve(scaled, ((Gt @ b[:, :, None])[:, :, 0] / d)[:, :, None])[:, :, 0] / d
                except (np.linalg.LinAlgError, ValueError):
                    out[s:s + chunk.shape[0]] = [self.loss(t) for t in chunk]
                    continue
                r = np.einsum("tl,tlm->tm", c, Gt) - b
                r = np.where(ok, r, np.nan)
            else:
                r = -b
            r = np.where(np.isfinite(r), r, self.penalty)
            np.clip(r, -_CLIP, _CLIP, out=r)
            out[s:s + chunk.shape[0]] = np.mean(r * r, axis=1)
        return out

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """Kaufman's variable-projection Jacobian from forward differences of the program.

        Only the free params are differenced (the affine ones held at their solved values)
        and the result is projected off the affine columns. A row that turns non-finite
        tries the backward step, else gets a zero derivative.
        """
        c, r, ok, proj = self._state(theta)
        f = theta.size
        J = np.zeros((r.size, f))
        if not ok.any():
            return J
        D = self._speculated(theta, c, ok)
        if D is not None:
            good0 = ok
            redo = np.empty(0, int)
        else:
            h = self._step(theta)
            base = self.expand(theta, c)
            P = np.repeat(base[None, :], f + 1, axis=0)
            P[np.arange(1, f + 1), self.free] += h
            F = self.predict_many(P)
            f0 = F[0]
            D = (F[1:] - f0) / h[:, None]  # (f, m)
            good0 = np.isfinite(f0) & ok
            bad = ~np.isfinite(D) & good0
            redo = np.flatnonzero(bad.any(axis=1))
        if redo.size:
            Q = np.repeat(base[None, :], redo.size, axis=0)
            Q[np.arange(redo.size), self.free[redo]] -= h[redo]
            back = (f0 - self.predict_many(Q)) / h[redo, None]
            D[redo] = np.where(bad[redo], back, D[redo])
        J = np.where(np.isfinite(D) & good0, D, 0.0).T.copy()
        if proj is not None:
            rows = proj[0]  # the rows the affine params were solved on
            Jo = J if rows is None else J[rows]
            if proj[1] == "ne":
                _, _, A, scaled, d = proj
                Jo = Jo - A @ (np.linalg.solve(scaled, (A.T @ Jo) / d[:, None]) / d[:, None])
            else:
                u = proj[2]
                Jo = Jo - u @ (u.T @ Jo)
            if rows is None:
                J = Jo
            else:
                J[rows] = Jo
        np.clip(J, -_CLIP, _CLIP, out=J)
        return J

    @staticmethod
    def _step(theta: np.ndarray) -> np.ndarray:
        return np.sqrt(_EPS) * np.maximum(np.abs(theta), 1e-3)

    def _speculated(self, theta: np.ndarray, c: np.ndarray, ok: np.ndarray) -> np.ndarray | None:
        """Forward differences (f, m) from the steps evaluated with the residuals, if finite."""
        if self._steps is None or self._steps[0] != theta.tobytes():
            return None
        _, steps, h = self._steps
        if self.lin.size:
            preds = steps[:, 0] + np.einsum("l,flm->fm", c, steps[:, 1:] - steps[:, :1])
        else:
            preds = steps[:, 0]
        D = (preds - self._steps_base[None, :]) / h[:, None]
        if not np.all(np.isfinite(D[:, ok])):
            return None
        return D

    def plain_loss(self, p: np.ndarray) -> float:
        """Mean squared (penalised) residual at used-params vector ``p``."""
        r = self.predict(p) - self.y
        r = np.clip(np.where(np.isfinite(r), r, self.penalty), -_CLIP, _CLIP)
        return float(np.mean(r * r))


def _affine_params(obj: _Projected, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of the used params the program is (jointly) affine in; empty if unsure."""
    k = base.size

    def close(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> bool:
        fa = np.isfinite(a)
        if not np.array_equal(fa, np.isfinite(b)):
            return False
        return bool(np.all(np.abs(a[fa] - b[fa]) <= 1e-8 * scale[fa] + 1e-300))

    # each param alone: f(0), f(base), f(t * base) on a line
    t = -1.7
    P = np.repeat(base[None, :], 2 * k + 1, axis=0)
    P[np.arange(1, k + 1), np.arange(k)] = 0.0
    P[np.arange(k + 1, 2 * k + 1), np.arange(k)] = t * base
    F = obj.predict_many(P)
    f_base = F[0]
    if not np.isfinite(f_base).any():
        return np.empty(0, int)
    lin = []
    for j in range(k):
        if base[j] == 0:
            continue
        f0, f2 = F[1 + j], F[1 + k + j]
        expected = f0 + t * (f_base - f0)
        scale = np.abs(f0) + abs(t) * np.abs(f_base - f0) + np.abs(f2)
        if close(f2, expected, scale) and np.array_equal(np.isfinite(f0), np.isfinite(f_base)):
            lin.append(j)
    lin_arr = np.array(lin, int)
    if lin_arr.size == 0:
        return lin_arr
    # all of them together, at the base and at a perturbed point, with random affine values
    def jointly(lin_arr: np.ndarray) -> bool:
        free = np.setdiff1d(np.arange(k), lin_arr)
        L = lin_arr.size
        for attempt in range(2):
            p = np.zeros(k)
            p[free] = base[free] * (1.0 if attempt == 0 else rng.uniform(0.6, 1.5, free.size))
            c = rng.uniform(-2.0, 2.0, L)
            P = np.repeat(p[None, :], L + 2, axis=0)
            P[np.arange(1, L + 1), lin_arr] = 1.0
            P[L + 1, lin_arr] = c
            F = obj.predict_many(P)
            g0, Gt, actual = F[0], F[1:L + 1] - F[0], F[L + 1]
            pred = g0 + c @ Gt
            scale = np.abs(g0) + np.abs(c) @ np.abs(Gt) + np.abs(actual)
            if not close(actual, pred, scale):
                return False
        return True

    if jointly(lin_arr):
        return lin_arr
    # e.g. params[0] * params[1] * x: each alone is affine, not both; drop one and retry
    for j in reversed(range(lin_arr.size)):
        fewer = np.delete(lin_arr, j)
        if fewer.size and jointly(fewer):
            return fewer
    return np.empty(0, int)


def _lm(obj: _Projected, theta0: np.ndarray, *, tol: float, max_nfev: int) -> tuple[np.ndarray, float, bool]:
    """Levenberg–Marquardt over the free params from ``theta0``: (theta, loss, converged)."""
    if theta0.size == 0:
        return theta0, obj.loss(theta0), True
    r0 = obj.residuals(theta0)
    # MINPACK's LM needs at least as many rows as params; trust-region reflective does not.
    method = "lm" if r0.size >= theta0.size else "trf"
    res = least_squares(obj.residuals, theta0, jac=obj.jacobian, method=method, x_scale="jac",
                        ftol=tol, xtol=tol, gtol=tol, max_nfev=max_nfev)
    theta = np.asarray(res.x, float)
    return theta, obj.loss(theta), bool(res.status > 0)


def _candidates(opts: FitOptions, idx: np.ndarray, free: np.ndarray, rng: np.random.Generator,
                ) -> tuple[np.ndarray, int]:
    """Start points for the free params (rows), and how many lead (ones, the parent)."""
    f = free.size
    lead = [np.ones(f)]
    if opts.parent and f:
        used = [int(i) for i in idx[free]]
        if any(i in opts.parent for i in used):
            parent = np.array([opts.parent.get(i, 1.0) for i in used], float)
            if np.all(np.isfinite(parent)):
                lead.insert(0, parent)
    out = list(lead)
    if f == 0:
        return np.array(out), len(lead)
    out.append(np.zeros(f))
    scale = 10.0 ** rng.uniform(-2.5, 1.5, size=(opts.screen, f))
    out.extend(scale * rng.choice([-1.0, 1.0], size=(opts.screen, f)))
    if opts.sweep > 1:
        factors = np.linspace(0.5, 1.5, max(11, opts.sweep // f) | 1)
        factors = factors[np.abs(factors - 1.0) > 1e-9]
        for base in lead:
            for j in range(f):
                if base[j] != 0:
                    block = np.repeat(base[None, :], factors.size, axis=0)
                    block[:, j] *= factors
                    out.extend(block)
    return np.array(out), len(lead)


def _subsample(n: int, size: int, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``size`` sorted distinct rows of ``n``: the anchors (extreme rows), then random ones."""
    anchors = anchors[:size]
    keep = np.ones(n, bool)
    keep[anchors] = False
    extra = rng.choice(np.flatnonzero(keep), size=size - anchors.size, replace=False)
    return np.sort(np.concatenate([anchors, extra]).astype(int))


def fit_default(model: RowModel, y: np.ndarray, opts: FitOptions,
                model_many: ManyModel | None = None, model_each: ManyModel | None = None) -> FitResult:
    """Variable-projected multi-start least squares on the used params, polished on all rows."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fit_default(model, model_many, y, opts, model_each)


def _fit_default(model: RowModel, model_many: ManyModel | None, y: np.ndarray, opts: FitOptions,
                 model_each: ManyModel | None = None,
                 ) -> FitResult:
    start_time = time.perf_counter()
    budget = opts.time_budget
    idx = np.array(opts.indices if opts.indices is not None else range(opts.n_params), int)
    full0 = np.ones(opts.n_params)
    n = y.shape[0]
    if idx.size == 0:
        return FitResult(full0, _mse(model(full0, None), y), 1, 0, "none")
    rng = np.random.default_rng(opts.seed)
    anchors = np.unique(np.array([a for a in opts.anchors if 0 <= a < n]
                                 + [int(np.argmin(y)), int(np.argmax(y))], int))
    rows = _subsample(n, opts.subsample, anchors, rng) if opts.subsample and n > opts.subsample else None
    spread = float(np.std(y)) + float(np.max(np.abs(y)))
    penalty = 1e3 * (spread if spread > 0 and np.isfinite(spread) else 1.0)
    var_y = float(np.var(y))
    atol = opts.agree_atol * (var_y if var_y > 0 else 1.0)
    notes: list[str] = []
    k = idx.size
    objectives: list[_Projected] = []

    def agree(a: float, b: float) -> bool:
        return abs(a - b) <= opts.agree_rtol * max(abs(a), abs(b)) + atol

    def objective(on_rows: np.ndarray | None, lin: np.ndarray, until: float, exact: bool = False) -> _Projected:
        # The exact objective checks results: it evaluates one vector at a time.
        obj = _Projected(model, None if exact else model_many, y, on_rows, full0, idx, lin, penalty,
                         start_time + until, exact)
        obj.speculate = opts.speculate and on_rows is not None and on_rows.size <= 2000
        obj.model_each = model_each
        objectives.append(obj)
        return obj

    # 0. which params are affine (solved exactly) and which are searched
    probe = objective(rows, np.empty(0, int), 0.6 * budget)
    try:
        lin = _affine_params(probe, np.ones(k), rng)
    except _OutOfTime:
        lin = np.empty(0, int)
    sub = objective(rows, lin, 0.6 * budget)
    sub.model_many = probe.model_many  # None once the program has shown it cannot batch
    free = sub.free
    m = n if rows is None else rows.size
    screen = sub
    if opts.screen_rows and m > opts.screen_rows:
        pick = _subsample(m, opts.screen_rows, np.searchsorted(rows, anchors) if rows is not None else anchors, rng)
        screen = objective(pick if rows is None else rows[pick], lin, 0.6 * budget)
        screen.model_many = sub.model_many
    notes.append(f"affine {lin.size}/{k}")

    # 1. screen the starts, then LM from the most promising few (and from ones over all used
    #    params), until two runs agree on the minimum.
    found: list[tuple[float, np.ndarray]] = []  # (loss on the subsample, theta) of LM runs
    ones_seed = np.ones(k)  # where LLM-SR's own start (ones, all used params) has got to
    runs = 0
    best_loss, best_theta = np.inf, np.ones(free.size)
    try:
        cands, lead = _candidates(opts, idx, free, rng)
        if free.size == 0:
            order = [cands[0]]
        else:
            values = screen.losses(cands)
            ranked = [int(i) for i in np.argsort(values, kind="stable") if np.isfinite(values[i])]
            chosen = [i for i in range(lead) if np.isfinite(values[i])]
            chosen += [i for i in ranked if i >= lead][: max(1, opts.starts - lead)]
            chosen.sort(key=lambda i: (values[i], i))
            order = [cands[i] for i in chosen]
            if order:
                best_theta = order[0]
        if lin.size and free.size:
            # roughly LLM-SR's path: all used params descend together from ones
            plain = objective(rows, np.empty(0, int), 0.6 * budget)
            plain.model_many = sub.model_many
            try:
                q, _, _ = _lm(plain, np.ones(k), tol=opts.explore_tol, max_nfev=opts.explore_iters * (k + 1))
                runs += 1
                ones_seed = q
                found.append((sub.loss(q[free]), q[free]))
                best_loss, best_theta = found[-1]
            except (ValueError, np.linalg.LinAlgError):
                pass
        for theta0 in order:
            if runs > 1 and time.perf_counter() > start_time + 0.4 * budget:
                notes.append("time budget: fewer starts")
                break
            runs += 1
            try:
                theta, value, _ = _lm(sub, theta0, tol=opts.explore_tol,
                                      max_nfev=opts.explore_iters * (free.size + 1))
            except (ValueError, np.linalg.LinAlgError):
                theta, value = theta0, sub.loss(theta0)
            found.append((value, theta))
            if lin.size == 0 and np.array_equal(theta0, np.ones(free.size)):
                ones_seed = theta  # no affine params: the free params are all the used ones
            if value < best_loss:
                best_loss, best_theta = value, theta
            if runs >= 2 and sum(agree(v, best_loss) for v, _ in found) >= 2:
                break
    except _OutOfTime:
        notes.append("time budget reached while exploring")

    # 2. polish on all rows. Subsample losses rank minima a few percent apart only roughly,
    #    so the distinct ones within ``runner_up`` of the best are re-ranked on more rows
    #    (``polish_rows``, or all) first. With many rows, most of the polishing happens on
    #    ``polish_rows`` of them and all rows see the last steps. A polished point that is
    #    not finite on every row gives way to the others.
    found.sort(key=lambda fv: fv[0])
    polish = [best_theta]
    for value, theta in found[1:]:
        if value > best_loss * opts.runner_up + atol:
            break
        if not any(agree(value, v) for v, t in found if any(t is q for q in polish)):
            polish.append(theta)
    spare = [theta for _, theta in found if not any(theta is t for t in polish)] + [np.ones(free.size)]
    full_obj = objective(None, lin, budget)
    full_obj.model_many = sub.model_many
    mid = None
    if opts.polish_rows and n > 2 * opts.polish_rows:
        mid = objective(_subsample(n, opts.polish_rows, anchors, rng), lin, budget)
        mid.model_many = sub.model_many
    final = objective(None, lin, np.inf, exact=True)  # never cut short: a few evaluations
    if len(polish) > 1 and rows is not None:
        try:
            values = (mid if mid is not None else full_obj).losses(np.array(polish))
            order_full = [int(i) for i in np.argsort(values, kind="stable")]
            # a near tie (within ``tie``) is decided by polishing both
            ties = [i for i in order_full[1:2] if values[i] <= values[order_full[0]] * (1 + opts.tie)]
            lead_ids = order_full[:1] + ties
            spare = [polish[i] for i in order_full if i not in lead_ids] + spare
            polish = [polish[i] for i in lead_ids]
        except _OutOfTime:
            polish = polish[:1]
    best: tuple[float, np.ndarray] | None = None
    best_finite = False
    queue = list(polish)
    while queue:
        theta = queue.pop(0)
        # Most of the polishing happens on a larger subsample when there are many rows; all
        # rows then only see the last few steps.
        stages = [(mid, max(opts.polish_min, opts.polish_iters * (free.size + 1))),
                  (full_obj, opts.final_iters * (free.size + 1))] if mid is not None else \
                 [(full_obj, max(opts.polish_min, opts.polish_iters * (free.size + 1)))]
        for obj, evals in stages:
            try:
                theta, _, _ = _lm(obj, theta, tol=opts.polish_tol, max_nfev=evals)
            except (ValueError, np.linalg.LinAlgError):
                pass
            except _OutOfTime:
                notes.append("time budget reached while polishing")
                break
        c, r, ok, _ = final._state(theta)
        value, finite = float(np.mean(r * r)), bool(ok.all())
        if best is None or (finite, -value) > (best_finite, -best[0]):
            best, best_finite = (value, final.expand(theta, c)), finite
        if not queue and not best_finite and spare and time.perf_counter() < start_time + budget:
            notes.append("non-finite on some rows: polishing another minimum")
            queue.append(spare.pop(0))
    assert best is not None
    p = best[1]

    # 3. the true loss at the expanded params; if the program was not affine where it
    #    seemed to be, finish with a plain least-squares fit of all used params.
    method = "varpro-lm" if lin.size else "lm"
    plain_full = objective(None, np.empty(0, int), budget)
    true_loss = objective(None, np.empty(0, int), np.inf, exact=True).plain_loss(p)
    try:
        if lin.size and not agree(true_loss, best[0]) and true_loss > best[0]:
            notes.append("projection mismatch: plain refit")
            q, value, _ = _lm(plain_full, p, tol=opts.polish_tol, max_nfev=opts.polish_iters * 4 * (k + 1))
            if value < true_loss:
                p, true_loss = q, value
                method += "+lm"
        if not found and free.size:
            # least squares could not run at all: BFGS on the mean squared error
            res = minimize(plain_full.plain_loss, p, method="BFGS", options={"maxiter": 100})
            if np.isfinite(res.fun) and res.fun < true_loss:
                p, true_loss = np.asarray(res.x, float), float(res.fun)
                method += "+bfgs"
    except (ValueError, np.linalg.LinAlgError):
        pass
    except _OutOfTime:
        notes.append("time budget reached in the final refit")

    # 4. LLM-SR's own basin, always: descent from ones over all used params, polished to
    #    convergence on all rows (the subsample and the early agreement of other starts can
    #    hide that this basin is the better one on all rows). Kept when it is lower.
    if opts.ones_basin and free.size and true_loss > atol and time.perf_counter() < start_time + budget:
        try:
            q = ones_seed
            evals = max(opts.polish_min, opts.polish_iters * (k + 1))
            if mid is not None:
                plain_mid = objective(mid.rows, np.empty(0, int), budget)
                plain_mid.model_many = sub.model_many
                q, _, _ = _lm(plain_mid, q, tol=opts.polish_tol, max_nfev=evals)
            plain_full.model_many = sub.model_many
            q, _, _ = _lm(plain_full, q, tol=opts.polish_tol, max_nfev=evals)
            value = objective(None, np.empty(0, int), np.inf, exact=True).plain_loss(q)
            if value < true_loss:
                p, true_loss = q, value
                method += "+ones"
        except (ValueError, np.linalg.LinAlgError):
            pass
        except _OutOfTime:
            notes.append("time budget reached polishing the start from ones")
    full = full0.copy()
    full[idx] = p
    loss = _mse(model(full, None), y)
    if model_many is not None:
        notes.append("batched" if sub.model_many is not None else "unbatched")
    notes.append(f"{runs} runs, {time.perf_counter() - start_time:.3f} s")
    return FitResult(full, loss, sum(o.nfev for o in objectives) + 1, runs, method, notes)
