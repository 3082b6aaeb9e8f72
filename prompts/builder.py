"""Turning the best programs of an island into a prompt.

The default template reproduces LLM-SR's prompt: the task description, the imports, the
k sampled programs as ``equation_v0 .. equation_v{k-1}`` (worst to best), and the header and
docstring of ``equation_v{k}`` for the model to complete. The same content is rendered for
completion endpoints (raw text the model continues) and for chat endpoints (system + user
messages). Templates belong to a strategy (``prompts/strategies/NAME/``, see
``prompts.strategy``) so researchers can edit them without touching code; a strategy's
feedback blocks (scores, failures, residuals, memory) arrive here as ready ``Notes`` text,
gathered by the loop's strategy hook from the run.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from string import Template

from eqforge.problems.entry import ENTRY, versioned
from eqforge.problems.spec import ProblemSpec
from eqforge.prompts.prompt import Prompt
from eqforge.prompts.strategy import load_strategy, strategy_template


@dataclass(frozen=True)
class ProgramRef:
    """A program as the prompt needs it: its id, full source (``def equation``) and score."""

    id: str
    code: str
    score: float | None = None
    nmse: float | None = None  # training NMSE, shown by strategies with the "scores" block


@dataclass(frozen=True)
class Notes:
    """Feedback block contents for one prompt (empty: the block is left out)."""

    failures: tuple[str, ...] = ()
    residuals: str = ""
    memory: tuple[str, ...] = ()




def signature(spec: ProblemSpec, name: str = ENTRY) -> str:
    args = ", ".join(f"{v}: np.ndarray" for v in spec.input_names)
    return f"def {name}({args}, params: np.ndarray) -> np.ndarray:"


def docstring(spec: ProblemSpec, strategy: str = "llmsr") -> str:
    args = "\n".join(
        f"    {v.name}: A numpy array representing observations of {v.description or v.name}"
        + (f" ({v.unit})" if v.unit else "")
        + "."
        for v in spec.inputs
    )
    out = spec.output.description or spec.output.name
    return Template(strategy_template(strategy, "docstring")).substitute(
        args=args, output_description=out
    ).strip()


def _quote_docstring(text: str) -> str:
    body = textwrap.indent(text, "    ").strip()
    return f'    """ {body}\n    """' if "\n" in text else f'    """{body}"""'


def initial_program(spec: ProblemSpec) -> str:
    """The seed program: the problem's ``initial_program`` or linear in every input."""
    if spec.initial_program:
        body = spec.initial_program.strip()
    else:
        terms = [f"params[{i}] * {n}" for i, n in enumerate(spec.input_names)]
        terms.append(f"params[{len(spec.input_names)}]")
        body = "return " + " + ".join(terms)
    return f"{signature(spec)}\n{_quote_docstring(docstring(spec))}\n{textwrap.indent(body, '    ')}\n"


_DEF_RE = re.compile(rf"^def {ENTRY}\(", re.M)


def _strip_docstring(code: str) -> str:
    """Remove the entry function's docstring so the prompt can put its own there."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == ENTRY and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
                and len(node.body) > 1
            ):
                del lines[first.lineno - 1 : first.end_lineno]
    return "\n".join(lines) + "\n"


def render_version(code: str, version: int, doc: str) -> str:
    """Rename ``equation`` to ``equation_v{version}`` and give it the versioned docstring."""
    code = _strip_docstring(code)
    code = _DEF_RE.sub(f"def {versioned(version)}(", code, count=1)
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"def {versioned(version)}("):
            # The header may span several lines; insert after the line ending with ':'.
            j = i
            while not lines[j].rstrip().endswith(":") and j + 1 < len(lines):
                j += 1
            lines.insert(j + 1, _quote_docstring(doc))
            break
    return "\n".join(lines).rstrip() + "\n"


class PromptBuilder:
    """Builds prompts for one problem from a strategy's templates.

    ``spec`` is the spec the model may see: for anonymising strategies the caller passes the
    anonymised one, so nothing here can leak the problem's wording.
    """

    #: the template families that came before strategies, by their strategy names
    LEGACY_TEMPLATES = {"llmsr": "llmsr", "llmsr_fewshot": "fewshot"}

    def __init__(self, spec: ProblemSpec, *, strategy: str = "llmsr", max_params: int = 10,
                 template: str | None = None):
        if template is not None:  # the pre-strategy keyword: a template family name
            strategy = self.LEGACY_TEMPLATES.get(template, template)
        self.spec = spec
        self.strategy = load_strategy(strategy)  # fail early on an unknown strategy
        self.name = strategy
        self.max_params = max_params

    def _template(self, part: str) -> Template:
        return Template(strategy_template(self.name, part))

    def build(self, programs: list[ProgramRef], notes: Notes | None = None) -> Prompt:
        """``programs`` sorted worst to best, as the database returns them."""
        doc0 = docstring(self.spec, self.name)
        scores = "scores" in self.strategy.blocks
        parts = []
        for k, prog in enumerate(programs):
            doc = doc0 if k == 0 else f"Improved version of `{versioned(k - 1)}`."
            text = render_version(prog.code, k, doc)
            if scores:
                text = score_line(k, prog.nmse) + text
            parts.append(text)
        version = len(programs)
        next_doc = f"Improved version of `{versioned(version - 1)}`." if version else doc0
        next_header = f"{signature(self.spec, versioned(version))}\n{_quote_docstring(next_doc)}\n"
        extension = extend_body(programs[-1].code, self.max_params) if (
            self.strategy.extend and programs) else None
        if extension is not None:
            next_header += extension
        fields = dict(description=self.spec.description, max_params=self.max_params,
                      functions="\n\n".join(parts), next_header=next_header)
        feedback = render_notes(notes)
        completion = self._template("completion").substitute(
            fields, feedback=feedback + "\n" if feedback else "")
        if extension is not None:
            completion = completion.rstrip("\n")  # the model continues the open expression
        user = self._template("extend_user" if extension is not None else "user").substitute(
            program=completion.rstrip(), next_name=versioned(version),
            max_params=self.max_params, feedback=feedback,
        )
        messages = [
            {"role": "system", "content": strategy_template(self.name, "system").strip()},
            {"role": "user", "content": user.strip()},
        ]
        return Prompt(completion=completion, messages=messages, version=version,
                      source_ids=[p.id for p in programs], template=self.name)


def score_line(version: int, nmse: float | None) -> str:
    value = "not available" if nmse is None else f"{nmse:.4g}"
    return f"# {versioned(version)}: NMSE on the training data = {value} (lower is better)\n"


def render_notes(notes: Notes | None) -> str:
    """Feedback blocks as Python comments, so they read the same in both prompt styles."""
    if notes is None:
        return ""
    out: list[str] = []
    if notes.failures:
        out.append("# Recent programs that failed, and why:")
        out += [f"#   - {f}" for f in notes.failures]
    if notes.residuals:
        out += [f"# {line}" if line else "#" for line in notes.residuals.splitlines()]
    if notes.memory:
        out.append("# Insights from earlier rounds:")
        out += [f"#   - {m}" for m in notes.memory]
    return "\n".join(out) + "\n" if out else ""


def extend_body(code: str, max_params: int) -> str | None:
    """The body of ``code`` with its final return left open as ``<expr> + params[k] *``.

    None when the program does not end in a return or uses every param already (the
    caller then builds an ordinary prompt).
    """
    import ast

    try:
        fn = next(n for n in ast.parse(code).body
                  if isinstance(n, ast.FunctionDef) and n.name == ENTRY)
    except (SyntaxError, StopIteration):
        return None
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                              ast.Constant):
        body = body[1:]
    if not body or not isinstance(body[-1], ast.Return) or body[-1].value is None:
        return None
    used = [n.slice.value for n in ast.walk(fn) if isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name) and n.value.id == "params"
            and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, int)]
    k = max(used, default=-1) + 1
    if k >= max_params:
        return None
    lines = [textwrap.indent(ast.unparse(stmt), "    ") for stmt in body[:-1]]
    lines.append(f"    return {ast.unparse(body[-1].value)} + params[{k}] *")
    return "\n".join(lines)
