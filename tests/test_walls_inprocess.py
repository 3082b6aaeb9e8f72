"""Issue 20, the in-process layers, each with the others switched off.

The AST policy and the attribute guard refuse syntax they have not reviewed (``match``
class, keyword, mapping and value patterns, attribute stores, nested format specs, a node
type Python adds later); the guard refuses frames, code, ``__dict__`` and ``str.format``
in a candidate with no hook; the hook alone refuses frames, code and I/O even through
``match`` patterns, and has no switch.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_sandbox_pool import _setup
from test_sandbox_runtime import in_child

from eqforge.evaluator.roles import ANALYZE
from eqforge.sandbox import guard, policy, runtime
from eqforge.sandbox.pool import SandboxPool

TESTS = Path(__file__).resolve().parent
RUNNERS = ("sweep", "raw_call", "act_on_factory", "fd_flags", "fork_bomb")  # in attack_runners


def _pool(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Iterator[SandboxPool]:
    """A pool whose factory holds the attack runners (and their driver); ``extra`` changes the setup."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    setup, trusted = _setup()
    runners = (*setup.runners, *(f"attack_runners:{r}" for r in RUNNERS))
    drivers = (*setup.drivers, "attack_runners:fit_then_score")
    with SandboxPool(dataclasses.replace(setup, runners=runners, drivers=drivers, **extra), trusted, workers=1) as p:
        yield p


@pytest.fixture
def kernel_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxPool]:
    """Candidates with no audit hook (and ``pool.run``: no static policy)."""
    yield from _pool(monkeypatch, audit_hook=False)


# -- 3. the in-process layers, each alone ------------------------------------------------------

SIG = "def equation(x, v, params):\n"
# Syntax that reads attributes by name without an ``a.b`` node, or that nobody reviewed.
UNREVIEWED = {
    "match-class-keyword": SIG + "    try:\n        1 / 0\n    except Exception as e:\n        match e:\n"
    "            case Exception(__traceback__=tb):\n                return tb\n    return x\n",
    "match-class-attr": SIG + "    A = float\n    match params[0]:\n        case A(real=r, imag=i):\n"
    "            return r * x\n    return x\n",
    "match-mapping": SIG + "    match {'a': x}:\n        case {'a': a, **rest}:\n            return a\n    return x\n",
    "match-value": SIG + "    match 1:\n        case np.pi:\n            return x\n    return x\n",
}
ATTRIBUTE_STORES = {
    "store": SIG + "    np.pi = 3\n    return x\n",
    "delete": SIG + "    del np.e\n    return x\n",
    "augmented": SIG + "    np.pi += 1\n    return x\n",
    "for-target": SIG + "    for np.pi in [1]:\n        pass\n    return x\n",
}
NESTED_SPEC = SIG + "    w = 3\n    s = f'{x[0]:{w}}'\n    return x\n"


@pytest.mark.parametrize("name", sorted(UNREVIEWED))
def test_policy_alone_refuses_unreviewed_syntax(name: str) -> None:
    v = policy.check(UNREVIEWED[name])
    assert v is not None and v.reason == "policy:syntax-form", (name, v)


def test_policy_alone_refuses_nested_format_specs_and_keeps_plain_ones() -> None:
    v = policy.check(NESTED_SPEC)
    assert v is not None and v.reason == "policy:syntax-form", v
    assert policy.check(SIG + "    s = f'{x[0]:.3f} {v[0]!r}'\n    return params[0] * x\n") is None


def test_policy_refuses_a_node_type_python_adds_later() -> None:
    class Future(ast.expr):  # stands for a syntax form added after the list was written
        _fields = ()

    tree = ast.parse(SIG + "    return x\n")
    ret = tree.body[0].body[0]  # type: ignore[attr-defined]
    ret.value = ast.BinOp(ret.value, ast.Add(), Future())
    v = policy._check_tree(tree, policy.Policy())
    assert v is not None and v.reason == "policy:syntax-form" and "Future" in v.detail


@pytest.mark.parametrize("code", [*UNREVIEWED.values(), *ATTRIBUTE_STORES.values()],
                         ids=[*UNREVIEWED, *ATTRIBUTE_STORES])
def test_the_guard_alone_compiles_only_what_it_can_guard(code: str) -> None:
    with pytest.raises(runtime.CandidateFailure) as e:
        guard.compile_source(code)
    assert e.value.reason == "policy:runtime" and "unguarded" in e.value.detail


def test_the_guard_alone_refuses_a_node_type_python_adds_later() -> None:
    class Future(ast.expr):
        _fields = ()

    tree = ast.parse(SIG + "    return x\n")
    tree.body[0].body[0].value = Future()  # type: ignore[attr-defined]
    assert guard.unguarded_form(tree) is not None and "Future" in str(guard.unguarded_form(tree))


def _no_policy_no_hook(p: SandboxPool, body: str) -> Any:
    """A program past no static policy, called in a candidate with no audit hook: the guard
    alone (``pool.run`` does not apply the policy; the evaluator does)."""
    return p.run("def equation(x):\n" + body, "equation", ANALYZE, arrays={"x": np.linspace(1, 2, 5)}, timeout=20)


GUARD_ALONE = {
    "traceback": "    try:\n        1 / 0\n    except Exception as e:\n        t = e.__traceback__\n    return x\n",
    "code": "    c = equation.__code__\n    return x\n",
    "frame via generator": "    g = (i for i in [1])\n    f = g.gi_frame\n    return x\n",
    "dict": "    d = np.__dict__\n    return x\n",
    "format reads attributes": "    s = '{0.__class__}'.format(x)\n    return x\n",
    "format_map": "    s = '{a.real}'.format_map({'a': 1})\n    return x\n",
    "an escape module": "    m = np.ma.extras.ma.inspect\n    return x\n",
    "a match pattern": "    match x:\n        case np.ndarray(__array_interface__=a):\n"
    "            return a\n    return x\n",
    "a store": "    np.pi = 3\n    return x\n",
}


def test_the_guard_alone_in_a_candidate(kernel_pool: SandboxPool) -> None:
    for name, body in GUARD_ALONE.items():
        out = _no_policy_no_hook(kernel_pool, body)
        assert not out.ok and out.reason == "policy:runtime", (name, out.reason, out.detail, out.payload)
    fine = _no_policy_no_hook(kernel_pool, "    return float(np.sin(x).sum()) + f'{x[0]:.2f}'.count('.')\n")
    assert fine.ok, (fine.reason, fine.detail)


def _hook_alone() -> dict[str, str]:
    """The hook with no policy and no guard: a program compiled unguarded, with the real
    builtins, reaching for frames through ``match`` patterns and plain attributes."""
    import types

    code = (
        "def probe(kind):\n"
        "    try:\n        1 / 0\n    except Exception as e:\n        tb = e.__traceback__\n"
        "    TB = type(tb)\n"
        "    if kind == 'match tb_frame':\n"
        "        match tb:\n            case TB(tb_frame=f):\n                return f\n"
        "    if kind == 'tb_frame':\n        return tb.tb_frame\n"
        "    if kind == 'gi_frame':\n        return (i for i in [1]).gi_frame\n"
        "    if kind == '__code__':\n        return probe.__code__\n"
        "    if kind == 'match __code__':\n"
        "        F = type(probe)\n        match probe:\n            case F(__code__=c):\n                return c\n"
        "    if kind == 'sys._getframe':\n        import sys\n        return sys._getframe()\n"
        "    if kind == 'exec other code':\n        return exec(probe.__code__)\n"
        "    if kind == 'compile':\n        return compile('1', 's', 'eval')\n"
        "    if kind == 'open':\n        return open('/etc/hostname')\n"
    )
    main = guard.compile_source(code, guard_attributes=False)
    namespace: dict[str, Any] = {"__builtins__": __builtins__, "types": types}
    record = runtime.install_audit_hook(allow_exec=(main,))  # armed from here on, for good
    exec(main, namespace)  # noqa: S102 - the one code object the hook allows
    record.clear()  # a candidate may erase the in-process record: enforcement does not read it
    out = {}
    for kind in ("match tb_frame", "tb_frame", "gi_frame", "__code__", "match __code__", "sys._getframe",
                 "exec other code", "compile", "open"):
        try:
            out[kind] = f"allowed: {type(namespace['probe'](kind)).__name__}"
        except runtime.SandboxViolation as exc:
            out[kind] = str(exc)
        except Exception as exc:  # noqa: BLE001
            out[kind] = f"other: {type(exc).__name__}: {exc}"
    return out


def test_the_hook_alone_refuses_frames_code_and_io_even_through_match_patterns() -> None:
    out = in_child(_hook_alone)
    assert all(v.startswith("blocked: ") for v in out.values()), out


def test_the_hook_has_no_switch() -> None:
    # install_audit_hook hands back a record, nothing callable: there is no arming switch
    # (and no state behind one) for a candidate to find in the factory's frame
    def body() -> dict[str, Any]:
        record = runtime.install_audit_hook()
        return {"callable": callable(record), "type": type(record).__name__}

    assert in_child(body) == {"callable": False, "type": "list"}
