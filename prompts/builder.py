"""Turning the best programs of an island into a prompt.

The default template reproduces LLM-SR's prompt: the task description, the imports, the
k sampled programs as ``equation_v0 .. equation_v{k-1}`` (worst to best), and the header and
docstring of ``equation_v{k}`` for the model to complete. The same content is rendered for
completion endpoints (raw text the model continues) and for chat endpoints (system + user
messages). Templates live in ``prompts/templates/`` so researchers can edit them without
touching code.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template

from eqforge.problems.spec import ProblemSpec
from eqforge.prompts.prompt import Prompt


@dataclass(frozen=True)
class ProgramRef:
    """A program as the prompt needs it: its id, full source (``def equation``) and score."""

    id: str
    code: str
    score: float | None = None


@lru_cache(maxsize=64)
def load_template(name: str) -> str:
    """Read ``prompts/templates/<name>.txt``; a clear error when it does not exist."""
    path = resources.files("eqforge.prompts") / "templates" / f"{name}.txt"
    if not path.is_file():
        from eqforge.errors import ConfigError

        available = sorted(
            p.name[:-4] for p in (resources.files("eqforge.prompts") / "templates").iterdir()
        )
        raise ConfigError(f"unknown prompt template {name!r}; available: {available}")
    return path.read_text(encoding="utf-8")


def signature(spec: ProblemSpec, name: str = "equation") -> str:
    args = ", ".join(f"{v}: np.ndarray" for v in spec.input_names)
    return f"def {name}({args}, params: np.ndarray) -> np.ndarray:"


def docstring(spec: ProblemSpec, template: str = "llmsr") -> str:
    args = "\n".join(
        f"    {v.name}: A numpy array representing observations of {v.description or v.name}"
        + (f" ({v.unit})" if v.unit else "")
        + "."
        for v in spec.inputs
    )
    out = spec.output.description or spec.output.name
    return Template(load_template(f"{template}_docstring")).substitute(
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


_DEF_RE = re.compile(r"^def equation\(", re.M)


def _strip_docstring(code: str) -> str:
    """Remove the entry function's docstring so the prompt can put its own there."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "equation" and node.body:
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
    code = _DEF_RE.sub(f"def equation_v{version}(", code, count=1)
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"def equation_v{version}("):
            # The header may span several lines; insert after the line ending with ':'.
            j = i
            while not lines[j].rstrip().endswith(":") and j + 1 < len(lines):
                j += 1
            lines.insert(j + 1, _quote_docstring(doc))
            break
    return "\n".join(lines).rstrip() + "\n"


class PromptBuilder:
    """Builds prompts for one problem from a template family."""

    def __init__(self, spec: ProblemSpec, *, template: str = "llmsr", max_params: int = 10):
        self.spec = spec
        self.template = template
        self.max_params = max_params
        load_template(template)  # fail early on an unknown template

    def build(self, programs: list[ProgramRef]) -> Prompt:
        """``programs`` sorted worst to best, as the database returns them."""
        doc0 = docstring(self.spec, self.template)
        parts = []
        for k, prog in enumerate(programs):
            doc = doc0 if k == 0 else f"Improved version of `equation_v{k - 1}`."
            parts.append(render_version(prog.code, k, doc))
        version = len(programs)
        next_doc = f"Improved version of `equation_v{version - 1}`." if version else doc0
        next_header = f"{signature(self.spec, f'equation_v{version}')}\n{_quote_docstring(next_doc)}\n"
        completion = Template(load_template(self.template)).substitute(
            description=self.spec.description,
            max_params=self.max_params,
            functions="\n\n".join(parts),
            next_header=next_header,
        )
        user = Template(load_template(f"{self.template}_user")).substitute(
            program=completion.rstrip(),
            next_name=f"equation_v{version}",
            max_params=self.max_params,
        )
        messages = [
            {"role": "system", "content": load_template(f"{self.template}_system").strip()},
            {"role": "user", "content": user.strip()},
        ]
        return Prompt(
            completion=completion,
            messages=messages,
            version=version,
            source_ids=[p.id for p in programs],
            template=self.template,
        )
