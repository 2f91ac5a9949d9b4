"""cluster.yaml: valid for the Ray cluster launcher, the node types the job needs, no secrets."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture(scope="module")
def text() -> str:
    return CLUSTER_YAML.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cfg(text) -> dict:
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    assert path.is_file(), f"the cluster-config schema is not where Ray keeps it: {path}"
    return json.loads(path.read_text())


def test_valid_against_rays_cluster_schema(cfg, ray_schema):
    import jsonschema

    jsonschema.validate(cfg, ray_schema)
    # the schema is strict: a misspelled key would not pass
    bad = copy.deepcopy(cfg)
    bad["available_node_types"]["gpu_worker"]["max_worker"] = 4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, ray_schema)


def test_passes_the_launchers_own_checks(cfg):
    """What `ray up` runs first: fill in the provider's defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_provider_auth_and_limits(cfg):
    assert cfg["cluster_name"]
    assert cfg["provider"]["type"] == "aws"
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", cfg["provider"]["region"])
    assert isinstance(cfg["provider"]["cache_stopped_nodes"], bool)
    assert cfg["auth"]["ssh_user"]
    assert cfg["idle_timeout_minutes"] > 0
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
    assert cfg["max_workers"] >= sum(v["max_workers"] for v in workers.values())


def test_node_types_head_cpu_and_gpu(cfg):
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    assert head in types
    assert types[head].get("resources", {}).get("GPU", 0) == 0
    workers = {k: v for k, v in types.items() if k != head}
    gpu = [v for v in workers.values() if v["resources"].get("GPU", 0) >= 1]
    cpu = [v for v in workers.values() if v["resources"].get("GPU", 0) == 0 and v["resources"].get("CPU", 0) >= 1]
    assert gpu, "no worker type offers a GPU (scoring and generation)"
    assert cpu, "no CPU-only worker type (reading, tagging, tokenizing)"
    for group in gpu + cpu:
        assert group["min_workers"] == 0 < group["max_workers"]
        assert group["resources"]["CPU"] >= 1
    # GPU nodes run the CUDA image
    assert all("gpu" in v.get("docker", {}).get("worker_image", cfg["docker"]["image"]) for v in gpu)


def test_every_node_type_has_an_instance_profile(cfg):
    for name, node in cfg["available_node_types"].items():
        arn = node["node_config"].get("IamInstanceProfile", {}).get("Arn", "")
        assert re.fullmatch(r"arn:aws:iam::(\d{12}|ACCOUNT_ID):instance-profile/[\w+=,.@/-]+", arn), (name, arn)


def test_setup_installs_the_package_and_ray_is_started(cfg):
    setup = " ".join(cfg["setup_commands"])
    assert "pip install" in setup and "affalign" in setup
    mounted = {str(v) for v in cfg.get("file_mounts", {}).values()}
    if "-e " in setup:
        assert "." in mounted  # the checkout is copied to the nodes
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])


SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"),
    "AWS secret access key": re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
    "credential setting": re.compile(r"(?i)\b(aws_secret_access_key|aws_session_token|aws_access_key_id)\b\s*[:=]"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def test_no_secret_in_the_file(text):
    for what, pattern in SECRET_PATTERNS.items():
        m = pattern.search(text)
        assert m is None, f"{what} in cluster.yaml: {m.group(0)[:6]}..."


def test_the_secret_check_catches_a_key():
    # AWS's documented example key, split so this file does not contain it either
    fake = "aws_access_key_id: AKIA" + "IOSFODNN7EXAMPLE\naws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY\n"
    hits = [what for what, p in SECRET_PATTERNS.items() if p.search(fake)]
    assert {"AWS access key id", "AWS secret access key", "credential setting"} <= set(hits)
