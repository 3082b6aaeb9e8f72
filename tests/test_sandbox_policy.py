"""The static program policy: what it rejects, with which rule, and that honest code passes."""

from __future__ import annotations

import pytest

from eqforge.sandbox.policy import Policy, Violation, check

SIG = "def equation(x: np.ndarray, v: np.ndarray, params: np.ndarray) -> np.ndarray:\n"


def body(*lines: str) -> str:
    return SIG + "".join(f"    {line}\n" for line in lines)


HONEST = [
    body("return params[0] * x + params[1] * v"),
    body("return params[0] * np.sin(x) + params[1] * np.exp(-params[2] * v ** 2)"),
    "import numpy as np\nimport math\n\n" + body("return params[0] * math.pi * np.tanh(x)"),
    "from scipy.special import gamma, erf\n" + body("return params[0] * erf(x) + gamma(params[1] + v * 0)"),
    "import numpy.polynomial.polynomial as P\n" + body("return P.polyval(x, params[:3])"),
    "from scipy import special\n" + body("return params[0] * special.erf(x)"),
    "G = 9.81\n\ndef helper(a, k):\n    return -k * a\n\n" + body("return G * params[0] * x + helper(v, params[1])"),
    body("out = np.zeros_like(x)", "for i in range(3):", "    out = out + params[i] * x ** i", "return out"),
    body("terms = [params[i] * x ** i for i in range(4)]", "return sum(terms)"),
    body('"""A docstring mentioning numpy."""', "with np.errstate(all='ignore'):",
         "    r = np.where(v > 0, np.log(v), 0.0)", "return params[0] * r"),
    body("a = np.linalg.norm(np.stack([x, v]), axis=0)", "return params[0] * a + np.emath.sqrt(x).real"),
    body("f = lambda t: params[0] * t", "try:", "    y = f(x)", "except ValueError:", "    y = x",
         "return y"),
    body("return params[0] * np.clip(x, -1, 1) + x.max() * v.astype(float).mean()"),
    body("s = f'{params[0]:.3f}'", "return params[0] * x.reshape(-1) + float(len(s)) * 0"),
]


@pytest.mark.parametrize("code", HONEST)
def test_honest_programs_pass(code: str) -> None:
    assert check(code) is None


REJECTED = [
    # (code, rule)
    ("import os\n" + body("return x"), "import"),
    (body("import subprocess", "return x"), "import"),
    ("from numpy import lib\n" + body("return x"), "import"),
    ("from scipy import special, optimize\n" + body("return x"), "import"),
    ("from numpy.lib import stride_tricks\n" + body("return x"), "import"),
    ("import numpy.lib.stride_tricks as st\n" + body("return st.as_strided(x)"), "import"),
    ("import numpy.ctypeslib\n" + body("return x"), "import"),
    ("from numpy import loadtxt\n" + body("return x"), "import"),
    ("from numpy import *\n" + body("return x"), "import"),
    ("from numpy import _core\n" + body("return x"), "import"),
    ("from . import something\n" + body("return x"), "import"),
    ("import numpy._core.multiarray\n" + body("return x"), "import"),
    (body("return __import__('os')"), "dunder"),
    (body("return x.__class__"), "dunder"),
    (body("return ().__class__.__bases__[0].__subclasses__()"), "dunder"),
    (body("return x._private"), "dunder"),
    (body("k = '__globals__'", "return x"), "dunder"),
    (body("k = b'__class__'", "return x"), "dunder"),
    (body("return eval('x')"), "builtin"),
    (body("exec('1')", "return x"), "builtin"),
    (body("return getattr(np, 'mean')(x)"), "builtin"),
    (body("return open('/etc/passwd').read()"), "builtin"),
    (body("return type(x)"), "builtin"),
    (body("g = globals()", "return x"), "builtin"),
    (body("return vars(np)"), "builtin"),
    (body("np.mean = lambda *a: 0.0", "return x"), "attribute-assignment"),
    (body("del np.mean", "return x"), "attribute-assignment"),
    (body("return np.loadtxt('/work/shared/data/llmsr/oscillator1/test_ood.csv')"), "attribute"),
    (body("return np.genfromtxt('t.csv')"), "attribute"),
    (body("return np.fromfile('t.bin')"), "attribute"),
    (body("return np.load('t.npy')"), "attribute"),
    (body("m = np.memmap('t.bin')", "return x"), "attribute"),
    (body("np.save('/tmp/x', x)", "return x"), "attribute"),
    (body("return np.lib.stride_tricks.as_strided(x, (10,), (0,))"), "attribute"),
    (body("c = np.ctypeslib", "return x"), "attribute"),
    (body("t = np.testing", "return x"), "attribute"),
    (body("p = x.ctypes.data", "return x"), "attribute"),
    (body("x.setflags(write=True)", "return x"), "attribute"),
    (body("b = x.base", "return x"), "attribute"),
    (body("c = np.random.default_rng().bit_generator.cffi", "return x"), "attribute"),
    (body("return '{0}'.format(x)"), "attribute"),
    (body("try:", "    1 / 0", "except Exception as e:", "    f = e.tb_frame", "return x"), "attribute"),
    (body("def g():", "    return 1", "c = g.cell_contents", "return x"), "attribute"),
    (body("global G", "return x"), "global"),
    (body("def inner():", "    nonlocal x", "return x"), "global"),
    (body("class A:", "    pass", "return x"), "class"),
    (body("async def f():", "    pass", "return x"), "async"),
    (body("return (p * x for p in params)"), "generator"),
    (body("def g():", "    yield 1", "return x"), "generator"),
    ("if True:\n    pass\n" + body("return x"), "toplevel"),
    ("for i in range(3):\n    pass\n" + body("return x"), "toplevel"),
]


@pytest.mark.parametrize(("code", "rule"), REJECTED)
def test_escapes_are_rejected_with_their_rule(code: str, rule: str) -> None:
    v = check(code)
    assert v is not None, code
    assert v.rule == rule, (v, code)
    assert v.reason == f"policy:{rule}"


def test_syntax_error_reason() -> None:
    v = check("def equation(x, v, params:\n    return x\n")
    assert v is not None and v.rule == "syntax" and v.reason == "syntax"


def test_size_limit() -> None:
    code = body("return x") + "#" * 30_000
    assert check(code) == Violation("size", f"program has {len(code)} characters")
    long_string = body(f"s = '{'a' * 6000}'", "return x")
    v = check(long_string, Policy(max_source_chars=100_000))
    assert v is not None and v.rule == "size"


def test_policy_is_data_and_widens_per_problem() -> None:
    code = "import scipy.integrate\n" + body("return x")
    assert check(code) is not None
    wide = Policy().widened(["scipy.integrate"])
    assert check(code, wide) is None
    # Widening keeps the rest: denied parts stay denied under a widened root.
    assert check("import scipy.integrate._private\n" + body("return x"), wide) is not None
    assert Policy.model_validate(wide.model_dump()) == wide
    with pytest.raises(ValueError):
        Policy(unknown_field=1)  # type: ignore[call-arg]


def test_no_false_rejections_on_honest_corpus(corpus_programs: list[dict]) -> None:
    honest = [p for p in corpus_programs if p["kind"] in ("valid", "slow", "nonfinite", "runtime_error")]
    assert honest
    rejected = {p["id"]: check(p["code"]) for p in honest}
    rejected = {k: v for k, v in rejected.items() if v is not None}
    assert rejected == {}, f"false rejections: {rejected}"
    # The corpus's syntax errors are caught as syntax, not as a policy rule.
    for p in corpus_programs:
        if p["kind"] == "syntax_error":
            v = check(p["code"])
            assert v is not None and v.reason == "syntax"
