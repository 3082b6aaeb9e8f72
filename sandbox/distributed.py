"""Sandbox pools on the nodes of a Ray cluster, behind the pool's own interface.

``DistributedPool(address, *pool_args, **pool_kwargs)`` starts one Ray actor per node (or
per share of the requested workers), and each actor builds an ordinary ``SandboxPool`` from
the same arguments *on its node*: the zygotes, their cgroups, network namespace, limits and
policy are the local pool's, so every guarantee the sandbox gives on one machine holds on
each node, and no candidate process ever runs in an actor. The driver sees the pool
interface the evaluator already uses — ``submit(job) -> Future`` resolving to whatever the
local pool returns, ``map``, ``run`` (one confined call), ``close`` — and sends each job to
the actor with the fewest jobs in flight per worker. ``isolation`` reports what each node's pool could enforce, so a
node that cannot enforce cgroups or namespaces shows up by name.

Ray is an optional extra (``pip install 'eqforge[ray]'``), imported only here and only when a
distributed pool is asked for. ``address`` is a cluster address (``ray://…`` or
``host:port``) or ``local`` (start a local instance, ended again by ``close``). The sandbox
knows nothing of the domain; neither does this module.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import Future
from typing import Any

from eqforge.errors import EqforgeError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'eqforge[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EqforgeError(f"--ray needs the ray package: {INSTALL_HINT}", exit_code=2) from None
    return ray


def connect(address: str, *, num_cpus: int | None = None) -> bool:
    """Connect to (or, for ``local``, start) Ray; True when this call started or joined it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any connection failure is one line for the user
        raise EqforgeError(f"--ray {address}: cannot connect to Ray ({type(exc).__name__}: {exc})") from None
    return True


class _PoolActor:
    """Owns one ordinary sandbox pool on its node (created as a Ray actor)."""

    def __init__(self, args: tuple, kwargs: dict) -> None:
        from eqforge.sandbox.pool import SandboxPool

        self.pool = SandboxPool(*args, **kwargs)

    def info(self) -> dict[str, Any]:
        return {"node": socket.gethostname(), "pid": os.getpid(), "workers": self.pool.size,
                "isolation": self.pool.isolation, "network": self.pool.network_isolation}

    async def run(self, job: Any) -> Any:
        import asyncio

        return await asyncio.wrap_future(self.pool.submit(job))

    async def call(self, args: tuple, kwargs: dict) -> Any:
        import asyncio

        return await asyncio.to_thread(self.pool.run, *args, **kwargs)

    def close(self) -> None:
        self.pool.close()


def _nodes(ray: Any) -> list[tuple[str, int]]:
    """(node id, CPUs) of every alive node with CPUs."""
    out = []
    for node in ray.nodes():
        cpus = int(node.get("Resources", {}).get("CPU", 0))
        if node.get("Alive") and cpus > 0:
            out.append((node["NodeID"], cpus))
    return out


class DistributedPool:
    """The ``SandboxPool`` interface over per-node sandbox pools held by Ray actors."""

    def __init__(self, address: str, *pool_args: Any, workers: int = 0, **pool_kwargs: Any) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = connect(address, num_cpus=workers or None)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = _nodes(ray)
        if not nodes:
            self.close()
            raise EqforgeError(f"--ray {address}: the cluster has no node with CPUs")
        total = workers or sum(c for _, c in nodes)
        shares = _split(total, [c for _, c in nodes])
        actor_cls = ray.remote(_PoolActor)
        self._actors: list[Any] = []
        self.sizes: list[int] = []
        for (node_id, _cpus), n in zip(nodes, shares, strict=True):
            if n <= 0:
                continue
            opts = {"num_cpus": n, "max_concurrency": 1000,
                    "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}
            self._actors.append(actor_cls.options(**opts).remote(pool_args, {**pool_kwargs, "workers": n}))
            self.sizes.append(n)
        try:
            self.nodes = ray.get([a.info.remote() for a in self._actors], timeout=300)
        except Exception as exc:  # noqa: BLE001 - a pool that did not start is one error
            self.close()
            raise EqforgeError(f"--ray {address}: a sandbox pool did not start on the cluster ({exc})") from None
        self.size = sum(self.sizes)
        self._inflight = [0] * len(self._actors)
        self._lock = threading.Lock()
        self._closed = False
        log.info("sandbox pools on Ray: %s", ", ".join(
            f"{n['node']} ({n['workers']} workers, network {n['network']})" for n in self.nodes))

    # -- the pool interface --------------------------------------------------------------
    @property
    def isolation(self) -> dict[str, Any]:
        """What the first node's pool enforces, plus every node's report under ``nodes``."""
        first = dict(self.nodes[0]["isolation"]) if self.nodes else {}
        first["nodes"] = {f"{n['node']}:{n['pid']}": n["isolation"] for n in self.nodes}
        return first

    @property
    def network_isolation(self) -> str:
        kinds = {n["network"] for n in self.nodes}
        return kinds.pop() if len(kinds) == 1 else "mixed: " + ", ".join(sorted(kinds))

    def _pick(self) -> int:
        with self._lock:
            i = min(range(len(self._actors)), key=lambda k: self._inflight[k] / self.sizes[k])
            self._inflight[i] += 1
        return i

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The local pool's ``run`` (one call in a fresh confined process), on some node."""
        if self._closed:
            raise RuntimeError("sandbox pool is closed")
        i = self._pick()
        try:
            return self._ray.get(self._actors[i].call.remote(args, kwargs))
        finally:
            with self._lock:
                self._inflight[i] -= 1

    def submit(self, job: Any) -> Future:
        out: Future = Future()
        if self._closed:
            out.set_exception(RuntimeError("sandbox pool is closed"))
            return out
        i = self._pick()
        inner = self._actors[i].run.remote(job).future()

        def done(f: Future) -> None:
            with self._lock:
                self._inflight[i] -= 1
            try:
                out.set_result(f.result())
            except Exception as exc:  # noqa: BLE001 - a lost actor is the job's failure, not the run's
                out.set_exception(exc)

        inner.add_done_callback(done)
        return out

    def map(self, jobs: list[Any]) -> list[Any]:
        return [f.result() for f in [self.submit(j) for j in jobs]]

    def close(self, wait: bool = True) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        ray = self._ray
        for actor in getattr(self, "_actors", []):
            try:
                if wait:
                    ray.get(actor.close.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - it is going away either way
                pass
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> DistributedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(total: int, capacities: list[int]) -> list[int]:
    """Share ``total`` workers over nodes in proportion to their CPUs (each at most its CPUs
    unless the total asks for more)."""
    cap = sum(capacities)
    shares = [max(0, (total * c) // cap) for c in capacities]
    i = 0
    while sum(shares) < total:
        shares[i % len(shares)] += 1
        i += 1
    return shares
