"""The accuracy–complexity Pareto front (PySR's hall of fame, for a run's programs)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def pareto_front(items: Iterable[T], complexity: Callable[[T], int | None],
                 loss: Callable[[T], float | None]) -> list[T]:
    """Items no other item beats on both complexity and loss, by increasing complexity.

    Among items of equal complexity only the lowest loss can be on the front, and an item
    is kept only if its loss is strictly below that of every simpler item. Items without
    a complexity or a finite loss are left out. Ties keep the first item given.
    """
    scored = []
    for order, item in enumerate(items):
        c, value = complexity(item), loss(item)
        if c is None or value is None or not math.isfinite(value):
            continue
        scored.append((c, value, order, item))
    scored.sort(key=lambda t: (t[0], t[1], t[2]))
    front: list[T] = []
    best = math.inf
    for _c, value, _order, item in scored:
        if value < best:
            front.append(item)
            best = value
    return front
