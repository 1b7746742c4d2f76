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
    setup = config["setup_commands"]
    installs = [c for c in setup if "pip install" in c]
    # every install pinned by the one constraints file that CI uses
    assert installs and all(
        "-c /home/ubuntu/plasticity-study/constraints.txt" in c for c in installs
    )
    assert '"ray[default]"' in installs[0] and "boto3" in installs[0]
    assert installs[-1].endswith("-e /home/ubuntu/plasticity-study")
    assert "/home/ubuntu/plasticity-study" in config["file_mounts"]
    workers = config["available_node_types"]["gpu_worker"]["node_config"]
    assert workers["InstanceMarketOptions"]["MarketType"] == "spot"
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}


def test_constraints_pin_what_the_nodes_and_the_launcher_install():
    import tomllib

    pins = {}
    for line in (CLUSTER.parent / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    project = tomllib.loads((CLUSTER.parent / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"] + project["optional-dependencies"]["cluster"]:
        name = dep.split("[")[0].split(">")[0].split("=")[0].strip().lower()
        assert name in pins, f"{name} is not pinned in constraints.txt"
    assert pins["ray"] and pins["boto3"]


def test_no_dashboard_or_ray_port_open_to_the_internet():
    text = CLUSTER.read_text()
    assert "0.0.0.0" not in text
    assert "--dashboard-host=127.0.0.1" in "\n".join(
        yaml.safe_load(text)["head_start_ray_commands"]
    )
