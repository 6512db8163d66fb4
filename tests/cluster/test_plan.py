"""Actors per node and threads per actor from Ray's node resources and the model's size (no cluster needed)."""

from __future__ import annotations

import pytest
from loupe.cluster.plan import GIB, PlanError, actor_memory, plan


def node(cpus: float, mem_gib: float, node_id: str = "n", alive: bool = True) -> dict[str, object]:
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": cpus, "memory": mem_gib * GIB}}


def test_defaults_fill_the_cores_with_actors_of_up_to_four_threads():
    p = plan([node(16, 64)], 1 * GIB)
    assert (p.threads, p.actors) == (4, 4)
    p = plan([node(2, 24, "a"), node(2, 24, "b")], GIB // 2)  # this machine, twice
    assert (p.threads, p.actors, [n.actors for n in p.nodes]) == (2, 2, [1, 1])


def test_memory_caps_the_actors_a_node_holds():
    need = actor_memory(8 * GIB)
    assert need > 8 * GIB
    p = plan([node(32, 24)], 8 * GIB)  # 32 cores but room for two 8 GiB models
    assert p.threads == 4 and p.actors == 24 * GIB // need == 2
    assert plan([node(4, 1)], 8 * GIB).actors == 1  # never fewer than one: Ray says if it cannot place it


def test_overrides_and_mixed_nodes():
    p = plan(
        [node(8, 64, "big"), node(2, 8, "small"), node(0, 8, "driver-only"), node(8, 64, "dead", alive=False)], GIB
    )
    assert p.threads == 2 and [n.node for n in p.nodes] == ["big", "small"] and [n.actors for n in p.nodes] == [4, 1]
    p = plan([node(8, 64), node(8, 64)], GIB, actors=3, threads=1)
    assert (p.threads, p.actors) == (1, 6)


@pytest.mark.parametrize(
    ("nodes", "kw", "message"),
    [
        ([node(4, 8)], {"actors": 0}, "--actors 0"),
        ([node(4, 8)], {"threads": 0}, "--actor-threads 0"),
        ([node(4, 8)], {"threads": 8}, "--actor-threads 8: the smallest node has 4 CPUs"),
        ([node(0, 8)], {}, "no live node with a CPU"),
    ],
)
def test_impossible_plans_are_one_line_errors(nodes, kw, message):
    with pytest.raises(PlanError, match=message) as info:
        plan(nodes, GIB, **kw)
    assert "\n" not in str(info.value)
