"""Turning a model's answer back into a program.

Models answer in many shapes: a fenced code block or raw code, a full ``def equation_vN``
or only the indented body continuing the prompt's header, prose around the code, several
functions at once. This module finds the intended function, maps its version name back to
``equation`` and returns full source, or a short machine-readable reason why it could not.

Open reasoning models (DeepSeek-R1 distills, Qwen3 in thinking mode, QwQ) write a
``<think>…</think>`` trace before the answer, often with draft code in it. The answer's code
must win, so ``split_reasoning`` drops traces before anything else looks at the text: closed
traces, a trace whose opening tag the chat template already wrote (only ``</think>`` in the
text), and an unterminated one (the model ran out of tokens while thinking).

Every step is linear in the answer's length (``prompts/scanning.py``): answers arrive on the
event loop, and one that never closes a fence, a tag or a bracket must not stall the run.
"""

from __future__ import annotations

import ast
import hashlib
import re
import textwrap
from dataclasses import dataclass

from eqforge.problems.entry import ENTRY, versioned
from eqforge.problems.spec import ProblemSpec
from eqforge.prompts.prompt import BODY_ENDS
from eqforge.prompts.scanning import MAX_AST_DEPTH, fences, line_starts_with, parse_prefix, safe_parse, split_reasoning

__all__ = ["Extracted", "extract_program", "normalize", "program_key", "reasoning_record", "split_reasoning"]

_VERSION_RE = re.compile(rf"^{ENTRY}(?:_v(\d+))?$")


@dataclass(frozen=True)
class Extracted:
    """The outcome of parsing one response: ``code`` on success, else ``error``."""

    code: str | None
    error: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.code is not None


def _code_blocks(text: str) -> list[str]:
    return [f.body for f in fences(text) if f.body.strip()]


def _body_to_function(body: str, header: str) -> str | None:
    """A bare body continuing the prompt's header: indent it and stop at the body's end.

    An indented body ends at the first line back at column 0 (the next function, prose);
    a body written without indentation ends at the next ``def``/``class``/fence line.
    """
    lines = body.strip("\n").splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    kept: list[str] = []
    indented = lines[0][0].isspace()
    for i, line in enumerate(lines):
        if i > 0 and line.strip():
            if indented and not line[0].isspace():
                break
            if not indented and line.startswith((*BODY_ENDS, "```")):
                break
        kept.append(line)
    text = textwrap.indent(textwrap.dedent("\n".join(kept)), "    ")
    return parse_prefix(f"{header}\n{text}")


def _functions(tree: ast.Module) -> list[ast.FunctionDef]:
    return [n for n in tree.body if isinstance(n, ast.FunctionDef)]


def _select(tree: ast.Module, version: int | None) -> ast.FunctionDef | None:
    eqs = [f for f in _functions(tree) if _VERSION_RE.match(f.name)]
    if not eqs:
        return None
    if version is not None:
        for f in eqs:
            if f.name == versioned(version):
                return f
    return eqs[-1]


def reasoning_record(text: str, completion_tokens: int | None, known: dict) -> dict:
    """What a sample's record says about its reasoning trace (merged with what the API reported)."""
    trace = len(split_reasoning(text)[1]) if text else 0
    out: dict = {}
    if trace:
        out["reasoning_chars"] = (known.get("reasoning_chars") or 0) + trace
        if known.get("reasoning_tokens") is None and completion_tokens:
            out["reasoning_tokens"] = round(completion_tokens * trace / max(1, len(text)))
            out["reasoning_estimated"] = True
    return out


def extract_program(text: str, spec: ProblemSpec, *, version: int | None = None) -> Extracted:
    """Parse a model response into full source of ``def equation(<inputs>, params)``."""
    if not text or not text.strip():
        return Extracted(None, "parse:empty", "the response is empty")
    text, trace = split_reasoning(text)
    if not text.strip():
        return Extracted(None, "parse:reasoning-only", f"the response is a reasoning trace ({len(trace)} "
                         "characters) with no answer after it; raise --max-tokens")
    header = f"def {ENTRY}({', '.join(spec.input_names)}, params):"
    candidates = _code_blocks(text) or [text]
    # Prefer a block that defines an equation function.
    candidates.sort(key=lambda b: 0 if line_starts_with(b, f"def {ENTRY}") else 1)
    source = candidates[0]
    first = next((ln for ln in source.splitlines() if ln.strip()), "")
    if first[:1].isspace() or not re.search(r"^def \w+\s*\(", source, re.M):
        fn = _body_to_function(source, header)
        if fn is None:
            return Extracted(None, "parse:syntax", "no parsable function body in the response "
                             f"(or one nested deeper than {MAX_AST_DEPTH})")
        source = fn
    else:
        # Keep from the first top-level statement that can start a module (import/def).
        source = textwrap.dedent(source)
        start = re.search(r"^(?:import |from |def |@)", source, re.M)
        if start:
            source = source[start.start() :]
        parsed = parse_prefix(source)
        if parsed is None:
            return Extracted(None, "parse:syntax", "the code does not parse")
        source = parsed
    tree = safe_parse(source)
    if tree is None:  # parse_prefix checked it; kept for the type checker
        return Extracted(None, "parse:syntax", f"the code does not parse (or nests deeper than {MAX_AST_DEPTH})")
    target = _select(tree, version)
    if target is None:
        return Extracted(None, "parse:no-equation", f"no function named {ENTRY} or {ENTRY}_vN")
    others = {f.name for f in _functions(tree) if _VERSION_RE.match(f.name)} - {target.name}
    for node in ast.walk(target):
        if isinstance(node, ast.Name) and _VERSION_RE.match(node.id) and node.id != target.name:
            return Extracted(
                None, "parse:calls-earlier-version", f"{target.name} calls {node.id}"
            )
    args = [a.arg for a in target.args.args]
    expected = [*spec.input_names, "params"]
    if args != expected:
        return Extracted(
            None, "parse:signature", f"{target.name}({', '.join(args)}) != equation({', '.join(expected)})"
        )
    # Keep imports, helpers and the target; drop other versions and stray statements.
    keep: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            keep.append(node)
        elif isinstance(node, ast.FunctionDef):
            if node is target or (node.name not in others and not _VERSION_RE.match(node.name)):
                keep.append(node)
    lines = source.splitlines()
    chunks = []
    for node in keep:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        chunk = "\n".join(lines[start - 1 : node.end_lineno])
        if node is target:
            chunk = re.sub(rf"^def {target.name}\(", f"def {ENTRY}(", chunk, count=1)
        chunks.append(chunk)
    code = "\n\n".join(chunks).rstrip() + "\n"
    if "import numpy as np" not in code:
        pass  # np is provided by the evaluator's namespace, as in LLM-SR
    return Extracted(code)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalize(code: str) -> str:
    """Source with comments, docstrings, type hints' formatting and whitespace normalised."""
    tree = safe_parse(code)
    if tree is not None:
        try:
            return ast.unparse(_strip_docstrings(tree))
        except (RecursionError, ValueError):  # a tree the unparser cannot print: compare as text
            pass
    return "\n".join(line.rstrip() for line in code.strip().splitlines())


def program_key(code: str) -> str:
    """Content hash under ``normalize``: programs with equal keys are evaluated once."""
    return hashlib.sha256(normalize(code).encode()).hexdigest()[:20]
