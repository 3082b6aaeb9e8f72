"""The anonymised view of a problem, for strategies that withhold prior knowledge.

LLM-SR's "without prior knowledge" ablation asks whether the model discovers the law from
data alone. For that nothing of the problem's wording may reach the model: the description,
the variable descriptions and units are dropped, the inputs become ``x0, x1, ...`` (in the
problem's input order) and the output ``y``. Programs are written, recorded and evaluated
with these names; the sandbox calls them positionally and the closed-form converter maps
arguments by position, so equations still appear in the problem's real names.
"""

from __future__ import annotations

import io
import tokenize
from string import Template

from eqforge.problems.spec import ProblemSpec, Variable


def anonymous_names(spec: ProblemSpec) -> dict[str, str]:
    """Real input name -> anonymous name, in input order."""
    return {name: f"x{i}" for i, name in enumerate(spec.input_names)}


def rename(code: str, mapping: dict[str, str], *, drop_comments: bool = False) -> str:
    """Rename identifiers in ``code`` token by token (formatting kept; comments too unless
    ``drop_comments``, which anonymisation uses: an author's comment may name the system).

    Attribute names (``np.x``) are left alone; code that does not tokenize is returned as is.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code
    out = []
    prev = None
    for tok in tokens:
        if drop_comments and tok.type == tokenize.COMMENT:
            continue
        if (tok.type == tokenize.NAME and tok.string in mapping
                and not (prev is not None and prev.type == tokenize.OP and prev.string == ".")):
            tok = tok._replace(string=mapping[tok.string])
        out.append(tok)
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            prev = tok
    return tokenize.untokenize(out)


def anonymise(spec: ProblemSpec, description: str) -> ProblemSpec:
    """The spec the model sees: ``x0..`` and ``y``, no descriptions, units or truth.

    ``description`` is the strategy's task text (``$inputs``/``$output`` substituted); it is
    the only description that reaches a prompt.
    """
    mapping = anonymous_names(spec)
    inputs = [Variable(name=mapping[v.name]) for v in spec.inputs]
    task = Template(description).safe_substitute(
        inputs=", ".join(v.name for v in inputs), output="y")
    seed = None
    if spec.initial_program:
        seed = "\n".join(line.rstrip() for line in
                         rename(spec.initial_program, mapping, drop_comments=True).splitlines()).strip()
    return ProblemSpec(
        name="anonymous", description=task, inputs=inputs, output=Variable(name="y"),
        data=spec.data, initial_program=seed, allowed_imports=list(spec.allowed_imports),
        min_rows=spec.min_rows,
    )
