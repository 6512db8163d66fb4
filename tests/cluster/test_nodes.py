"""`loupe batch --ray ADDRESS` on a two-node Ray cluster on 127.0.0.1: both nodes work, the results equal a local
batch, and losing the second node mid-job still stores every item exactly once (a rerun sends nothing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loupe.cluster.driver import ClusterOptions, run_cluster_job
from loupe.cluster.modelref import model_ref
from loupe.cluster.rows import ItemAnswer
from loupe.models.synthetic import SyntheticModel

from tests.cluster.conftest import TwoNodes, answers, new_job, once_each, run_cli
from tests.store.conftest import make_images


@pytest.fixture(autouse=True)
def _whole_pool_first() -> Iterator[None]:
    """Ray Data starts sending items once every actor is up, so a handful of tiny items reach both nodes."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before, ctx.wait_for_min_actors_s = ctx.wait_for_min_actors_s, 120
    yield
    ctx.wait_for_min_actors_s = before


def _node2_id() -> str:
    import ray

    (node,) = [n for n in ray.nodes() if n["Alive"] and "node2" in n["Resources"]]
    return str(node["NodeID"])


def test_both_nodes_answer_and_the_results_equal_a_local_batch(
    two_nodes: TwoNodes, tmp_path: Path, digit: Path, model: list[str]
):
    folder = make_images(tmp_path / "imgs", 4, seed=11)
    argv = ["batch", str(folder), "--task-file", str(digit), *model, "--json"]
    code, out, err = run_cli(*argv, "--threads", "1", "--db", str(tmp_path / "local.db"))
    assert code == 0, err
    code, out, err = run_cli(
        *argv, "--ray", two_nodes.address, "--actors", "1", "--actor-threads", "1", "--db", str(tmp_path / "r.db")
    )
    assert code == 0 and err == "", err
    summary = json.loads(out)
    assert summary["actors"] == 2 and summary["sent"] == 4 and summary["nodes"] == 2  # one actor on each node
    assert answers(tmp_path / "r.db", 1) == answers(tmp_path / "local.db", 1)


def test_losing_a_node_mid_job_stores_every_item_once(
    two_nodes: TwoNodes, tmp_path: Path, digit: Path, model: list[str], tiny_models: dict[str, SyntheticModel]
):
    folder = make_images(tmp_path / "imgs", 6, seed=12)
    db = tmp_path / "s.db"
    store, job_id = new_job(db, [str(folder), "--task-file", str(digit), *model])
    m = tiny_models["smolvlm"]
    ref = model_ref(m.text_path.stem, [m.text_path, m.mmproj_path], catalog=False)
    node2 = _node2_id()
    lost: list[str] = []

    def lose_node2(answer: ItemAnswer) -> None:
        if not lost and answer.worker.startswith(node2):  # node 2 is busy: it dies with its next item in hand
            lost.append(answer.worker)
            two_nodes.lose_node2()

    with store:
        summary = run_cluster_job(store, job_id, ref, ClusterOptions(actors=1, threads=1), on_answer=lose_node2)
    assert lost and summary.batch.done == 6 and summary.sent == 6
    assert once_each(db) == (6, 6, "ok")
    code, out, _ = run_cli("batch", "--resume", str(job_id), "--db", str(db), "--ray", two_nodes.address, "--json")
    assert code == 0 and json.loads(out)["sent"] == 0
