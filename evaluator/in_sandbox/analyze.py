"""A one-shot runner: call the program's function once with the job's arrays; its output is text.

For analysis code (the agent's ``analyze`` tool) and any FunSearch-style
``Sandbox.run(program, function, input)``: the job's arrays are passed positionally, in the
order given, and the function's return value comes back as text (with whatever it printed,
captured from the process's standard output by the zygote). Never a score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from eqforge.sandbox.messages import MAX_TEXT, Call, Reply


def run(fn: Callable[..., Any], inputs: dict[str, list[np.ndarray]], call: Call, state: dict[str, Any]) -> Reply:
    arrays = [np.array(a) for a in call.arrays.values()]
    for a in arrays:
        a.flags.writeable = False
    result = fn(*arrays)
    return Reply(True, text="" if result is None else str(result)[:MAX_TEXT])
