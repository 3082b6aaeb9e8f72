"""The ``eqforge`` command line.

Subcommands: ``run`` (search, or ``--resume`` one), ``evaluate`` (score programs),
``report`` (HTML/markdown report of a run), ``new`` (scaffold a problem from a CSV),
``problems`` (list/show built-ins), ``strategies`` (list/show prompting strategies),
``sweep`` (a study of many runs, see ``eqforge.sweep``), ``models export-hf`` (the
default model as an HF checkpoint for vLLM). User errors print one line and
exit 2 (bad input) or 1 (runtime failure); Ctrl-C leaves a resumable run and exits 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from eqforge.config import Config, load_config
from eqforge.errors import ConfigError, EqforgeError
from eqforge.flags import BACKEND, add_config_flags, apply_flags, given
from eqforge.textsafe import install_log_sanitizer, terminal_safe

log = logging.getLogger("eqforge")


def say(*parts: object, file: Any = None) -> None:
    """``print``, with model- and program-derived text made inert for the terminal (textsafe)."""
    print(*(terminal_safe(p) for p in parts), file=file or sys.stdout)


#: which configuration fields ``eqforge evaluate`` takes as flags (``run`` takes them all)
EVAL_FLAGS = {"evaluator": None, "run": ["seed"]}
RUN_FLAGS = {"run": None, "llm": None, BACKEND: None, "sampler": None, "database": None, "evaluator": None}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="folder with train.csv/test_id.csv/test_ood.csv (LLM-SR layout)")
    p.add_argument("--config", help="TOML file overriding the defaults")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eqforge", description="LLM-driven scientific equation discovery."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="search for an equation")
    run.add_argument("problem", nargs="?", help="built-in problem name or folder with problem.toml")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    run.add_argument("--replay-from", metavar="RUN_DIR",
                     help="re-run a recorded run with its config, serving its own samples' responses")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    _add_common(run)
    add_config_flags(run, RUN_FLAGS)

    ev = sub.add_parser("evaluate", help="score a JSONL file of programs")
    ev.add_argument("problem")
    ev.add_argument("--programs", required=True, help='JSONL with {"id", "code"} per line')
    ev.add_argument("--out", required=True, help="JSONL file for the results")
    _add_common(ev)
    add_config_flags(ev, EVAL_FLAGS)

    rep = sub.add_parser("report", help="write an HTML (or markdown) report of a run")
    rep.add_argument("run_dir")
    rep.add_argument("--format", choices=["html", "markdown"], default="html")
    rep.add_argument("--out", help="output file (default RUN_DIR/report.html or report.md)")

    new = sub.add_parser("new", help="scaffold a problem folder from a CSV")
    new.add_argument("directory")
    new.add_argument("--csv", required=True)
    new.add_argument("--target", required=True, help="the column to model")
    new.add_argument("--describe", required=True, help="the system, in your own words")
    add_config_flags(new, {BACKEND: ["spec", "base_url", "model", "api_key_env"]})
    new.add_argument("--ood-variable", help="variable whose extreme range is held out as OOD")
    new.add_argument("--ood-fraction", type=float)
    new.add_argument("--test-fraction", type=float)
    new.add_argument("--seed", type=int, default=0)
    new.add_argument("--force", action="store_true", help="overwrite an existing folder")

    sw = sub.add_parser("sweep", help="run a study: problems x strategies x models x seeds (resumable)")
    sw.add_argument("source", help="sweep file (TOML), or a sweep directory to continue or re-run")
    sw.add_argument("--out", help="sweep directory (required with a sweep file)")
    sw.add_argument("--parallel", type=int, help="runs at once (default: cores / sandbox workers per run)")
    sw.add_argument("--ray", metavar="ADDRESS", help="run each run as a Ray task: a cluster address or 'local'")
    sw.add_argument("--table", action="store_true", help="only write results tables and report of DIR")
    sw.add_argument("--quiet", action="store_true", help="no progress output")
    sw.add_argument("--judge", metavar="SPEC", help="also ask this model whether each best law is the ground truth "
                    "(LLM-SRBench's SA judge; verdicts in DIR/judge.jsonl, disagreements in DIR/judge.md)")

    probs = sub.add_parser("problems", help="list or show built-in problems")
    psub = probs.add_subparsers(dest="action", required=True)
    psub.add_parser("list")
    show = psub.add_parser("show")
    show.add_argument("name")

    strat = sub.add_parser("strategies", help="list or show prompting strategies")
    ssub = strat.add_subparsers(dest="action", required=True)
    ssub.add_parser("list")
    sshow = ssub.add_parser("show")
    sshow.add_argument("name")

    models = sub.add_parser("models", help="prepare models for other engines")
    msub = models.add_subparsers(dest="action", required=True)
    exp = msub.add_parser("export-hf", help="convert the default model (or a GGUF file) to an HF "
                                           "checkpoint that vLLM can serve")
    exp.add_argument("out", help="folder for the checkpoint")
    exp.add_argument("--gguf", help="GGUF file to convert (default: the offline default model)")
    exp.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    exp.add_argument("--no-chat-template", action="store_true",
                     help="leave the chat template out (a plain base-model checkpoint)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    return parser


def _config_from(args: argparse.Namespace) -> Config:
    return apply_flags(load_config(getattr(args, "config", None)), args)


def _progress(args: argparse.Namespace):  # noqa: ANN202
    from eqforge.agents.progress import Progress, QuietProgress

    if args.quiet:
        return QuietProgress()
    if sys.stderr.isatty():
        try:
            from eqforge.agents.live import LiveProgress
            from eqforge.evaluator.analysis import equation_text

            return LiveProgress(equation=equation_text)
        except ImportError:
            pass
    return Progress()


def cmd_run(args: argparse.Namespace) -> int:
    from eqforge.api import RunSpec, default_run_dir, discover, resume

    samples = given(args, "run").get("samples")
    if args.resume:
        if args.problem:
            raise ConfigError("give either a problem or --resume RUN_DIR, not both")
        summary = resume(args.resume, samples=samples, progress=_progress(args))
        out = Path(args.resume)
    elif args.replay_from:
        from eqforge.api import read_run_config, replay

        if args.problem:
            raise ConfigError("--replay-from RUN_DIR takes the problem from the recorded run; drop the problem")
        saved = read_run_config(args.replay_from)
        out = Path(given(args, "run").get("out") or default_run_dir(saved["run"]["problem"]))
        summary = replay(args.replay_from, out=out, samples=samples, progress=_progress(args))
    else:
        if not args.problem:
            raise ConfigError("name a problem (see `eqforge problems list`) or pass --resume RUN_DIR")
        config = _config_from(args)
        spec = RunSpec(problem=args.problem, data=args.data)
        out = Path(config.run.out or default_run_dir(args.problem))
        summary = discover(spec, config, out=out, progress=_progress(args))
    _print_summary(summary, out)
    failed = _failed_at_model(summary, out)
    if failed:
        say(f"eqforge: error: {failed}", file=sys.stderr)
        return 1
    return 0


def _failed_at_model(summary: dict[str, Any], out: Path) -> str | None:
    """One line when every sample of the run failed at the model (never got an answer)."""
    n = summary.get("samples") or 0
    failures = summary.get("failures") or {}
    if not n or summary.get("valid") or sum(v for k, v in failures.items() if k.startswith("llm:")) < n:
        return None
    from eqforge.evaluator.rundir import RunDir

    detail = next((r.detail for r in RunDir(out).read_samples(strict=False) if r.source == "llm" and r.detail), "")
    reasons = ", ".join(f"{k} x{v}" for k, v in failures.items())
    return (f"all {n} samples failed at the model ({reasons}): {detail[:160]}; "
            f"see {out / 'samples.jsonl'}")


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    best = summary.get("best") or {}
    lines = [
        f"run directory: {out}",
        f"samples: {summary['samples']}  valid: {summary['valid']}  stopped: {summary['stopped']}",
    ]
    if best:
        nmse = best.get("nmse", {})
        lines.append(f"best score (-MSE train): {best['score']:.6g}")
        lines.append("test NMSE: " + ", ".join(f"{k}={v:.3g}" if v is not None else f"{k}=n/a"
                                               for k, v in nmse.items()))
        if best.get("equation"):
            lines.append(f"best equation: {best['equation']}"
                         f"  (complexity {best.get('complexity')})")
        if "recovered" in summary:
            lines.append("ground truth: " + str(summary.get("recovery_status") or (
                "recovered" if summary["recovered"] else "not recovered")))
        lines.append("best program:\n" + (best.get("program") or "").rstrip())
        lines.append("params: " + json.dumps([round(p, 6) for p in best.get("params") or []]))
    say("\n".join(lines))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from eqforge.evaluator.roles import prestart

    prestart(given(args, "evaluator").get("workers"))  # the sandbox starts while the rest is imported and loaded
    from eqforge.evaluator.evaluate import evaluate_file
    from eqforge.problems.registry import load_problem

    config = _config_from(args)
    problem = load_problem(args.problem, data=args.data, seed=config.run.seed)
    programs = Path(args.programs)
    if not programs.is_file():
        raise EqforgeError(f"{programs}: file not found", exit_code=2)
    rows = evaluate_file(problem, programs, Path(args.out), config)
    ok = sum(r["ok"] for r in rows)
    say(f"evaluated {len(rows)} programs: {ok} ok, {len(rows) - ok} failed -> {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    try:
        from eqforge.evaluator.report import write_report
    except ImportError as exc:
        raise EqforgeError(f"report unavailable: {exc}") from None
    path = write_report(Path(args.run_dir), fmt=args.format, out=args.out)
    say(f"report written to {path}")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    path = scaffold_from_args(args)
    say(f"problem written to {path}; review problem.toml, then: eqforge run {path} --llm ...")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from eqforge.sweep.command import sweep

    if args.parallel is not None and args.parallel < 1:
        raise ConfigError("--parallel must be at least 1")
    return sweep(args.source, out=args.out, parallel=args.parallel, ray=args.ray, table=args.table,
                 quiet=args.quiet, judge=args.judge)


def cmd_problems(args: argparse.Namespace) -> int:
    from eqforge.problems.registry import list_problems

    if args.action == "list":
        for name, summary in list_problems().items():
            say(f"{name:28s} {summary[:90]}")
        return 0
    from eqforge.problems.registry import describe_problem

    say(describe_problem(args.name))
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from eqforge.prompts.strategy import describe_strategy, load_strategy, strategy_names

    if args.action == "list":
        for name in strategy_names():
            s = load_strategy(name)
            text = " ".join(s.description.split())
            say(f"{name:14s} {'(template base) ' if s.abstract else ''}{text[:100]}"
                  f"{'…' if len(text) > 100 else ''}")
        return 0
    say(describe_strategy(args.name))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from eqforge.agents.llm.export_hf import export_hf

    path = export_hf(args.out, args.gguf, dtype=args.dtype, chat_template=not args.no_chat_template,
                     overwrite=args.overwrite)
    say(f"checkpoint written to {path}; serve it with: python -m vllm.entrypoints.openai.api_server "
          f"--model {path} --max-model-len 2048  (see docs/backends.md)")
    return 0


def scaffold_from_args(args: argparse.Namespace) -> Path:
    """What ``eqforge new`` runs: the flags of the ``new`` sub-command, drafting with ``--llm``."""
    from eqforge.problems.authoring import scaffold

    def g(key: str, default: Any = None) -> Any:
        return getattr(args, key, default)

    llm = llm_name = None
    specs = given(args, BACKEND).get("spec")
    if specs:
        from eqforge.agents.drafting import as_complete
        from eqforge.agents.llm.registry import make_llm

        config = apply_flags(Config(), args)
        llm = as_complete(make_llm(config.llm, seed=g("seed", 0) or 0), close=True)
        llm_name = ", ".join(specs)
    return scaffold(
        g("directory"), g("csv"), g("target"), g("describe"), llm=llm, llm_name=llm_name,
        test_fraction=g("test_fraction"), ood_variable=g("ood_variable"), ood_fraction=g("ood_fraction"),
        seed=g("seed", 0) or 0, force=bool(g("force", False)),
    )


COMMANDS = {"run": cmd_run, "evaluate": cmd_evaluate, "report": cmd_report, "new": cmd_new,
            "problems": cmd_problems, "strategies": cmd_strategies, "sweep": cmd_sweep,
            "models": cmd_models}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    install_log_sanitizer()  # log lines quote programs and model text: no escape sequences reach the terminal
    try:
        return COMMANDS[args.command](args)
    except EqforgeError as exc:
        say(f"eqforge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        say("eqforge: interrupted; the run can be continued with `eqforge run --resume DIR`",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
