"""Which of the evaluator's modules the sandbox runs where, by import path.

The sandbox is handed these names (it knows nothing of fitting): the *driver* runs in the
trusted zygote, next to the training targets; the *runners* run inside candidate processes.
Kept apart from both so that the main process names them without importing scipy.
"""

DRIVER = "eqforge.evaluator.runner:fit_job"  # trusted: the optimiser, in the zygote
PREDICT = "eqforge.evaluator.in_sandbox.predict:serve"  # candidate side: predictions only
ANALYZE = "eqforge.evaluator.in_sandbox.analyze:run"  # candidate side: one call, text out


def prestart(workers: int | None = None) -> None:
    """Start the evaluator's sandbox zygotes now (before the problem is loaded): a command
    that will evaluate soon overlaps their start-up with its own imports and loading."""
    import os

    from eqforge.sandbox.messages import Boot
    from eqforge.sandbox.pool import prestart as start

    n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    start(n, Boot(runners=(PREDICT, ANALYZE), drivers=(DRIVER,)))
