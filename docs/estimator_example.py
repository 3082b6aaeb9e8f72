# %% [markdown]
# # eqforge as a scikit-learn estimator
#
# A notebook-style walk-through (each `# %%` is a cell; open it in Jupyter or VS Code, or
# run `python docs/estimator_example.py`). It fits a damped nonlinear oscillator given as a
# pandas DataFrame whose column names carry units, through the `replay:` backend (recorded
# model answers, so it runs offline, in seconds and the same way every time), then shows the
# equation table, the law in LaTeX and predictions on held-out data. Swap `llm=` for
# `"openai:gpt-4o-mini"`, `"vllm:..."` or the default offline model for a real search.

# %%
from pathlib import Path

import numpy as np
import pandas as pd

from eqforge import EquationRegressor

HERE = Path(__file__).resolve().parent
RESPONSES = HERE.parent / "tests" / "data" / "oscillator1_responses.jsonl"


def oscillator(n: int, seed: int, x_range: tuple[float, float]) -> tuple[pd.DataFrame, pd.Series]:
    """a = 0.8 sin x - x cos x - 0.2 x^3 - 0.5 v^3, with awkward column names."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(*x_range, n)
    v = rng.uniform(-1.0, 1.0, n)
    a = 0.8 * np.sin(x) - x * np.cos(x) - 0.2 * x**3 - 0.5 * v**3
    return pd.DataFrame({"x (m)": x, "v [m/s]": v}), pd.Series(a, name="a (m/s²)")


X, y = oscillator(400, 0, (-1.0, 1.0))
X_test, y_test = oscillator(100, 1, (-1.0, 1.0))  # in-domain held-out rows
X_ood, y_ood = oscillator(100, 2, (1.0, 1.6))  # out of domain: larger displacements

# %%
model = EquationRegressor(
    llm=f"replay:{RESPONSES}",
    samples=24,
    seed=0,
    workers=2,
    quiet=True,
    description="A damped nonlinear oscillator: acceleration from position and velocity.",
    guesses=["0.8*sin(x) - 0.2*x**3"],  # what we believe already; scored before the first prompt
)
model.fit(X, y, X_test_id=X_test, y_test_id=y_test, X_test_ood=X_ood, y_test_ood=y_ood)

# The columns became variables by `eqforge new`'s rules, units kept:
for v in (*model.problem_.spec.inputs, model.problem_.spec.output):
    print(f"{v.label!r:12} -> {v.name} [{v.unit}]")

# %% [markdown]
# ## The equation table: each distinct law once
# (`variants` counts the programs that state the same law; in a notebook `model` itself
# renders the best law in LaTeX above this table.)

# %%
pd.set_option("display.width", 120)
print(model.equations_[["complexity", "loss", "nmse_test_id", "nmse_test_ood", "variants",
                        "equation"]].to_string(float_format=lambda v: f"{v:.3g}"))

# %% [markdown]
# ## The selected law (`model_selection="best"`, PySR's rule)

# %%
print("equation:", model.best_["equation"])
print("LaTeX:   ", model.latex())
print("sympy:   ", model.sympy())

# %% [markdown]
# ## Held-out predictions
# `predict` evaluates the closed form with `sympy.lambdify` (built from the program's
# AST; the program itself never runs in this process).

# %%
pred = model.predict(X_ood)
print(pd.DataFrame({"x (m)": X_ood["x (m)"], "a true": y_ood, "a predicted": pred}).head()
      .to_string(float_format=lambda v: f"{v:.6f}"))
print("max |error| out of domain:", float(np.max(np.abs(pred - y_ood))))

# %% [markdown]
# ## Exports and the run behind it

# %%
f = model.numpy()  # also model.jax() and model.pytorch()
print("numpy export agrees:", bool(np.allclose(f(X_ood.to_numpy()), pred)))
print("run directory:", model.run_dir_.name, "| samples:", model.summary_["samples"],
      "| valid:", model.summary_["valid"])
