"""scipy's two optimisers the fitter uses, imported without scipy.optimize's heavy ``__init__``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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


least_squares, minimize = _lean_optimizers()
