"""packaging/ray/: the KubeRay manifests, the `ray up` config and the Dockerfile hold together: required keys, the same
volumes at the same paths (models read-only on workers), every `loupe` command accepted by Loupe's own parser, one
image and one Ray version everywhere, and cluster.yaml accepted by Ray's own config preparation and schema."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml
from loupe.cli.main import parser
from loupe.models.catalog import load_catalog

REPO = Path(__file__).resolve().parents[2]
RAY = REPO / "packaging" / "ray"
MODELS, INPUTS, RESULTS, STORE = "/models", "/data/in", "/results", "/store"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((RAY / name).read_text()) if d is not None]


def one(name: str) -> dict[str, Any]:
    (doc,) = load(name)
    return doc


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", (RAY / "Dockerfile").read_text(), re.M)
    assert match, f"the Dockerfile has no default for {name}"
    return match.group(1)


def pod_containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return list(template["spec"]["containers"])


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def claims(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Volume name -> its persistentVolumeClaim."""
    return {v["name"]: v["persistentVolumeClaim"] for v in template["spec"]["volumes"]}


def test_raycluster_has_a_head_and_workers_with_the_shared_volumes() -> None:
    rc = one("raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster" and rc["metadata"]["name"] == "loupe"
    spec = rc["spec"]
    assert spec["rayVersion"] == dockerfile_arg("RAY_VERSION")
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the driver's node: no Loupe actor there
    (head_c,) = pod_containers(head["template"])
    (group,) = spec["workerGroupSpecs"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    (worker_c,) = pod_containers(group["template"])
    assert head_c["image"] == worker_c["image"] == image()
    for container, template in ((head_c, head["template"]), (worker_c, group["template"])):
        assert env(container)["LOUPE_MODEL_DIR"] == MODELS and env(container)["LOUPE_OFFLINE"] == "1"
        found = mounts(container)
        assert found[MODELS]["readOnly"] is True and found[INPUTS]["readOnly"] is True
        assert not found[RESULTS].get("readOnly", False)
        volumes = claims(template)
        assert {found[p]["name"] for p in found} == set(volumes)  # every mount has its volume, and no volume is spare
        assert volumes[found[MODELS]["name"]]["readOnly"] is True
        assert container["lifecycle"]["preStop"]["exec"]["command"][-1] == "ray stop"
    assert STORE in mounts(head_c) and STORE not in mounts(worker_c)  # the store: on the head only
    res = worker_c["resources"]
    assert res["requests"] == res["limits"]  # a Guaranteed pod: whole cores for llama.cpp's threads
    assert int(res["limits"]["cpu"]) >= 2 and res["limits"]["memory"].endswith("Gi")
    assert int(res["limits"]["memory"][:-2]) >= 3 * int(res["limits"]["cpu"]) // 2  # room for one model per actor


def test_every_claim_is_declared_with_a_fitting_access_mode() -> None:
    pvcs = {d["metadata"]["name"]: d for d in load("volumes.yaml")}
    assert all(d["apiVersion"] == "v1" and d["kind"] == "PersistentVolumeClaim" for d in pvcs.values())
    rc = one("raycluster.yaml")["spec"]
    templates = [rc["headGroupSpec"]["template"], *(g["template"] for g in rc["workerGroupSpecs"])]
    used = {c["claimName"] for t in templates for c in claims(t).values()}
    used |= {c["claimName"] for c in claims(one("models-job.yaml")["spec"]["template"]).values()}
    assert used == set(pvcs)
    modes = {name: d["spec"]["accessModes"] for name, d in pvcs.items()}
    assert modes["loupe-store"] == ["ReadWriteOnce"]  # SQLite's WAL: a local file system, one writer
    assert modes["loupe-results"] == ["ReadWriteMany"]  # every worker writes its --out files
    assert modes["loupe-models"] == ["ReadWriteMany"]  # written once by the pull Job, read by all


def test_the_model_job_pulls_and_verifies_a_catalog_model_into_the_shared_dir() -> None:
    job = one("models-job.yaml")
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    (c,) = pod_containers(job["spec"]["template"])
    assert c["image"] == image() and env(c)["LOUPE_MODEL_DIR"] == MODELS and env(c)["LOUPE_OFFLINE"] == "0"
    assert not mounts(c)[MODELS].get("readOnly", False)
    commands = c["command"][-1].split(" && ")
    names = {shlex.split(cmd)[3] for cmd in commands if shlex.split(cmd)[:3] in (["loupe", "models", "pull"],)}
    assert names and names <= set(load_catalog().names())
    assert any(cmd.startswith("loupe models verify ") for cmd in commands)
    for cmd in commands:
        assert_parses(cmd)


def test_the_rayjob_runs_loupe_batch_on_the_head_of_that_cluster() -> None:
    job = one("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": one("raycluster.yaml")["metadata"]["name"]}
    entry = job["spec"]["entrypoint"]
    assert entry.startswith(f"loupe batch {INPUTS} --ray auto --db {STORE}/")
    assert_parses(entry)


def test_cluster_yaml_is_what_ray_up_accepts() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = one("cluster.yaml")
    assert raw["cluster_name"] == "loupe" and raw["provider"]["type"] == "local"
    prepared = prepare_config(copy.deepcopy(raw))  # what `ray up` does first, with Ray's defaults for on-premise
    validate_config(prepared)  # Ray's own JSON schema
    assert prepared["head_node_type"] in prepared["available_node_types"]
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == len(
        raw["provider"]["worker_ips"]
    )
    setup = " ".join(raw["setup_commands"])
    assert '"loupe[ray]==' in setup and f'"ray[data]=={dockerfile_arg("RAY_VERSION")}"' in setup
    assert f"loupe[ray]=={project()['version']}" in setup
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = raw[key][-1]
        assert f"LOUPE_MODEL_DIR={MODELS}" in start and "LOUPE_OFFLINE=1" in start and "ray start" in start
    assert "--num-cpus=0" in raw["head_start_ray_commands"][-1]


def test_dockerfile_builds_loupe_with_the_ray_extra_from_this_repository() -> None:
    text = (RAY / "Dockerfile").read_text()
    ray_version = dockerfile_arg("RAY_VERSION")
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f.startswith("rayproject/ray:${RAY_VERSION}-") for f in froms)
    minimum = next(d for d in project()["optional-dependencies"]["ray"] if d.startswith("ray"))
    assert tuple(map(int, ray_version.split("."))) >= tuple(map(int, minimum.split(">=")[1].split(".")))
    assert ")[ray]" in text and '"ray[data]==${RAY_VERSION}"' in text
    assert "GGML_NATIVE=OFF" in text  # never the build machine's -march=native
    assert "startswith('llama-cpp-python')" in text  # the pin is pyproject's, not repeated
    assert "ENV LOUPE_MODEL_DIR=/models" in text
    ignore = (RAY / "Dockerfile.dockerignore").read_text().split()
    for line in re.findall(r"^COPY --chown=\S+ (.+) \S+$", text, re.M):
        for source in line.split():
            assert (REPO / source).exists(), source
            assert f"!{source}" in ignore, f"{source} is not in the build context"
    # every package folder the wheel needs is copied (pyproject's package-dir)
    folders = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    assert folders <= {s for line in re.findall(r"^COPY --chown=\S+ (.+) \S+$", text, re.M) for s in line.split()}


def test_readme_names_every_file_and_its_commands_parse() -> None:
    text = (RAY / "README.md").read_text()
    for path in RAY.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in text, path.name
    commands = [
        re.sub(r"\s+#.*$", "", line.split("-- ", 1)[1]).strip()
        for line in text.splitlines()
        if "kubectl exec -it $HEAD -- loupe " in line
    ]
    assert any(c.startswith("loupe import /results/") for c in commands)
    for cmd in commands:
        assert_parses(cmd)
    assert "loupe models pull" in text and "loupe models verify" in text and "loupe models import" in text


def assert_parses(command: str) -> None:
    """A `loupe ...` command line the parser accepts (one with --ray is set aside where `loupe batch` has no --ray)."""
    argv = shlex.split(command)
    assert argv[0] == "loupe", command
    args, extra = parser().parse_known_args(argv[1:])
    assert not extra, f"{command}: unrecognized {extra}"
    assert args.command == argv[1]


def image() -> str:
    return str(pod_containers(one("raycluster.yaml")["spec"]["headGroupSpec"]["template"])[0]["image"])


def project() -> dict[str, Any]:
    return dict(tomllib.loads((REPO / "pyproject.toml").read_text())["project"])
