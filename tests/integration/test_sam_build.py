"""`sam build` of template.yaml succeeds: layer built with pip (arm64 wheels from the index), every function copied.

Slow (about a minute, needs the package index); no Docker, no AWS credentials.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clearing_tools import template_model as tm

from tests.conftest import venv_tool

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_sam_build_builds_the_layer_and_every_function(tmp_path):
    sam = venv_tool("sam")
    build_dir = tmp_path / "build"
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [
            sam,
            "build",
            "--region",
            "us-east-1",
            "--template-file",
            str(ROOT / "template.yaml"),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-cached",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Build Succeeded" in result.stdout + result.stderr

    layer = build_dir / "ClearingCoreLayer" / "python"
    assert (layer / "clearing" / "topics.py").is_file(), "the clearing package is in the layer"
    assert (layer / "clearing" / "data" / "reference_data.json").is_file()
    assert (layer / "pydantic").is_dir() and (layer / "aws_lambda_powertools").is_dir()
    # only the core ships (docs/architecture.md, "Layout: what ships where"): no tools, no FIX proxy
    assert (layer / "clearing" / "fix" / "client.py").is_file(), "the exchange_gateway Lambda's proxy client"
    shipped = sorted(p.relative_to(layer).as_posix() for p in (layer / "clearing").rglob("*.py"))
    for absent in ("clearing_tools", "clearing_fix"):
        assert not (layer / absent).exists(), f"{absent} must not be in the layer"
    for prefix in (
        "clearing/local/",
        "clearing/cli/",
        "clearing/bench/",
        "clearing/cost.py",
        "clearing/template_model.py",
        "clearing/fix/proxy.py",
        "clearing/fix/session.py",
        "clearing/fix/store.py",
        "clearing/fix/publisher.py",
        "clearing/fix/messages.py",
        "clearing/fix/simulator.py",
        "clearing/fix/local.py",
    ):
        assert not [path for path in shipped if path.startswith(prefix)], f"{prefix} must not be in the layer"
    assert not list(layer.glob("*.egg-info")), "no packaging metadata of the project in the layer"
    # arm64 build: compiled wheels must be for aarch64
    cores = list(layer.glob("pydantic_core/_pydantic_core*.so"))
    assert cores and all("aarch64" in c.name for c in cores), cores

    for logical_id, fn in tm.functions(tm.load_template(ROOT / "template.yaml")).items():
        built = build_dir / logical_id / f"{fn.handler_module.replace('.', '/')}.py"
        if fn.handler_file(ROOT).exists():
            assert built.is_file(), f"{logical_id}: {built} missing from the build"
    built_template = (build_dir / "template.yaml").read_text()
    assert "ClearingCoreLayer" in built_template
