"""How the best program came about: the agent conversation behind it, for the report.

With ``--strategy agent`` a program is the end of a conversation — data summaries, the
model's own analyses, evaluations and their residual diagnoses. The report shows that
conversation for the best program, turn by turn, from ``turns.jsonl`` (written by
``agents.agent``): each turn's model text, tool calls with arguments, tool results, tokens.
Long texts are clipped so a report stays readable; the full record is the file itself.
"""

from __future__ import annotations

import html
import json
from typing import Any

from eqforge.evaluator.report.escaping import md_code, md_fence, md_text

CLIP = 1500


def episode_of(samples: list[dict[str, Any]], sample_id: str | None) -> str | None:
    """The agent episode that produced sample ``sample_id`` (None for ordinary samples)."""
    for s in samples:
        if s.get("id") == sample_id:
            return s.get("episode")
    return None


def episode_turns(turns: list[dict[str, Any]], episode: str) -> list[dict[str, Any]]:
    return sorted((t for t in turns if t.get("episode") == episode), key=lambda t: t.get("turn", 0))


def _clip(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= CLIP else text[:CLIP] + f"\n… [{len(text) - CLIP} more characters]"


def _calls(turn: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(tool, arguments, result) per tool call of a turn."""
    results = turn.get("results") or []
    out = []
    for i, call in enumerate(turn.get("tool_calls") or []):
        args = call.get("arguments") or {}
        arg_text = args.get("code") if isinstance(args.get("code"), str) else (
            json.dumps(args) if args else "")
        res = results[i] if i < len(results) else {}
        tag = f" → {res['sample']}" if res.get("sample") else ""
        out.append((f"{call.get('name')}{tag}", str(arg_text), str(res.get("result", ""))))
    return out


def transcript_html(turns: list[dict[str, Any]]) -> str:
    e = html.escape
    parts = []
    for t in turns:
        if t.get("turn", 0) == 0:
            task = next((m.get("content") for m in t.get("messages", []) if m.get("role") == "user"), "")
            parts.append(f"<details><summary>task</summary><pre>{e(_clip(task))}</pre></details>")
            continue
        if not t.get("tool_calls") and not t.get("text"):
            if t.get("end"):
                parts.append(f"<p class='muted'>episode ended: {e(str(t['end']))}</p>")
            continue
        tokens = f"{t.get('prompt_tokens') or 0} + {t.get('completion_tokens') or 0} tokens"
        body = f"<h3>turn {t['turn']} <span class='muted'>({e(tokens)})</span></h3>"
        if t.get("text"):
            body += f"<pre>{e(_clip(t['text']))}</pre>"
        for name, args, result in _calls(t):
            body += (f"<p><b>{e(name)}</b></p>" + (f"<pre>{e(_clip(args))}</pre>" if args else "")
                     + f"<pre class='muted'>{e(_clip(result))}</pre>")
        if t.get("end"):
            body += f"<p class='muted'>episode ended: {e(str(t['end']))}</p>"
        parts.append(body)
    return "<div class='card'>" + "\n".join(parts) + "</div>"


def transcript_markdown(turns: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for t in turns:
        if t.get("turn", 0) == 0 or (not t.get("tool_calls") and not t.get("text")):
            continue
        out += [f"**Turn {md_text(t['turn'])}** ({md_text(t.get('prompt_tokens') or 0)} + "
                f"{md_text(t.get('completion_tokens') or 0)} tokens)", ""]
        if t.get("text"):
            out += [*md_fence(_clip(t["text"]), "text"), ""]
        for name, args, result in _calls(t):
            out += [f"- {md_code(name)}", ""]
            if args:
                out += [*md_fence(_clip(args), "python"), ""]
            out += [*md_fence(_clip(result), "text"), ""]
        if t.get("end"):
            out += [f"_episode ended: {md_text(t['end'])}_", ""]
    return out
