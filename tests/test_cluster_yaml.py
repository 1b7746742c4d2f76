"""cluster.yaml against the JSON schema that Ray ships (no cloud account needed)."""

import json
import os
from pathlib import Path

import jsonschema
import yaml

CLUSTER = Path(__file__).parent.parent / "cluster.yaml"


def test_cluster_yaml_validates_against_rays_schema():
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(CLUSTER.read_text())
    schema_path = os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")
    jsonschema.validate(config, json.loads(Path(schema_path).read_text()))
    validate_config(prepare_config(config))  # with the provider's defaults filled in


def test_cluster_installs_this_project_with_pinned_versions_and_spot_gpu_workers():
    config = yaml.safe_load(CLUSTER.read_text())
    setup = "\n".join(config["setup_commands"])
    for pin in ("torch==", "torchvision==", "ray[tune]==", "optuna=="):
        assert pin in setup
    assert "pip install -q -e /home/ubuntu/plasticity-study" in setup
    assert "/home/ubuntu/plasticity-study" in config["file_mounts"]
    workers = config["available_node_types"]["gpu_worker"]["node_config"]
    assert workers["InstanceMarketOptions"]["MarketType"] == "spot"
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}
