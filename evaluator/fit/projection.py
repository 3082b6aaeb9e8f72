"""Variable projection: a program's residuals with its affine params solved out exactly.

Most candidate equations are sums of ``params[j] * g(x, other params)``; the params found
affine (``affine_params``) are solved by linear least squares at every point the search
visits, so the nonlinear search runs over the others only.
"""

from __future__ import annotations

import time

import numpy as np

from eqforge.evaluator.fit.options import _BATCH_ELEMENTS, _CLIP, _EPS, _RIDGE, ManyModel, OutOfTime, RowModel


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
            raise OutOfTime
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
            each = self.model_each(full, self.rows)
            assert each is not None  # one vector at a time never refuses
            return each
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
