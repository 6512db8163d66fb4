"""How many model actors each node runs and how many threads each gets, from the node's cores and memory and the
model's size (a pure function of Ray's node resource dicts, so it is tested without a cluster)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loupe.core.errors import LoupeError

GIB = 1024**3
MAX_THREADS = 4  # llama.cpp on CPUs: past ~4 threads an actor gains little; more actors use the cores better
OVERHEAD_BYTES = GIB // 2  # per actor beyond the weights: the model process, KV cache, projector buffers, Python
WEIGHT_FACTOR = 1.25  # weights in memory take a little more than the files (mmap'd tensors plus compute buffers)


class PlanError(LoupeError):
    """Actors or threads that cannot fit the cluster as asked."""


@dataclass(frozen=True)
class NodePlan:
    """One node's share: how many actors it can hold."""

    node: str
    cpus: int
    memory: int
    actors: int


@dataclass(frozen=True)
class Plan:
    """The whole cluster: threads per actor (the same for every actor, Ray Data's `num_cpus`) and actors per node."""

    threads: int
    nodes: tuple[NodePlan, ...]
    memory_per_actor: int

    @property
    def actors(self) -> int:
        """Actors over all nodes (Ray Data's `concurrency`)."""
        return sum(n.actors for n in self.nodes)


def actor_memory(model_bytes: int) -> int:
    """The memory one actor needs for a model whose files total `model_bytes`."""
    return int(model_bytes * WEIGHT_FACTOR) + OVERHEAD_BYTES


def check_counts(actors: int | None, threads: int | None) -> None:
    """--actors and --actor-threads as given (before any cluster is asked): at least 1 each."""
    if actors is not None and actors < 1:
        raise PlanError(f"--actors {actors}: give at least 1 actor per node")
    if threads is not None and threads < 1:
        raise PlanError(f"--actor-threads {threads}: give at least 1 thread per actor")


def plan(
    nodes: Sequence[Mapping[str, object]],
    model_bytes: int,
    *,
    actors: int | None = None,
    threads: int | None = None,
) -> Plan:
    """Actors per node and threads per actor. `nodes` are Ray node dicts (`ray.nodes()`: "NodeID", "Alive",
    "Resources" with "CPU" and "memory"); `actors` (per node) and `threads` override the defaults, which are: threads
    = min(4, the smallest node's cores), then as many actors as the node's cores and memory hold (at least one)."""
    check_counts(actors, threads)
    usable = [n for n in nodes if n.get("Alive", True) and _cpus(n) >= 1]
    if not usable:
        raise PlanError("the Ray cluster has no live node with a CPU to run a model on")
    need = actor_memory(model_bytes)
    smallest = min(_cpus(n) for n in usable)
    t = threads if threads is not None else min(MAX_THREADS, smallest)
    if t > smallest:
        raise PlanError(f"--actor-threads {t}: the smallest node has {smallest} CPUs")
    out = []
    for n in usable:
        cpus, memory = _cpus(n), int(_resources(n).get("memory", 0) or 0)
        fit = max(1, min(cpus // t, memory // need if memory else cpus // t))
        out.append(NodePlan(str(n.get("NodeID", "")), cpus, memory, actors if actors is not None else fit))
    return Plan(t, tuple(out), need)


def _resources(node: Mapping[str, object]) -> Mapping[str, float]:
    res = node.get("Resources", {})
    return res if isinstance(res, Mapping) else {}


def _cpus(node: Mapping[str, object]) -> int:
    return int(_resources(node).get("CPU", 0) or 0)
