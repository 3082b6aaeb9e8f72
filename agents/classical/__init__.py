"""Classical symbolic-regression searchers as first-class runs: ``sindy:``, ``operon:``, ``gplearn:``.

A study that says a language model "finds better laws" needs the strongest methods that use
no language model in the same rows, scored the same way. These searchers run on the problem's
training split under the run's budget (``run.max_seconds``; ``run.samples`` caps how many of
their final models are recorded), and their final models — the whole Pareto front where the
method has one — become ordinary eqforge programs that the sandboxed evaluator scores like any
model's answer. The run directory is an ordinary one with the searcher as each sample's
``source``, so ``eqforge report`` and sweep tables read it unchanged.

    spec        ``sindy:degree=3,threshold=0.05`` -> kind and validated options
    expr        a sympy expression -> ``def equation(<inputs>, params)`` with its constants
    sindy       STLSQ (pysindy) over a polynomial/trigonometric term library
    gp          Operon (pyoperon) and gplearn genetic programming
    runner      fit, translate, score in the sandbox, record, summarise

The libraries are optional (``pip install 'eqforge[baselines]'``) and imported only when a
run asks for them.
"""

from eqforge.agents.classical.spec import CLASSICAL_KINDS, ClassicalSpec, is_classical, parse_classical

__all__ = ["CLASSICAL_KINDS", "ClassicalSpec", "is_classical", "parse_classical"]
