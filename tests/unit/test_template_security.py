"""Security scan of template.yaml with checkov: no failed check, and every suppression says why.

checkov's dependencies conflict with ours, so it lives in its own venv ($CHECKOV_VENV, default
.venv-checkov at the repo root), installed by `make install-dev` from requirements/checkov.txt (pinned
with hashes, re-resolved by `make upgrade`). Run outside make, the test installs that venv itself from
the same file; it never skips: a missing scanner is a failure.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clearing_tools import template_model as tm

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("CHECKOV_VENV", ROOT / ".venv-checkov"))
CHECKOV = VENV / "bin" / "checkov"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.exists():
        subprocess.run(
            [sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=120
        )
        install = subprocess.run(
            [
                str(VENV / "bin" / "pip"),
                "install",
                "--quiet",
                "--require-hashes",
                "-r",
                str(ROOT / "requirements" / "checkov.txt"),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert install.returncode == 0, f"checkov install into {VENV} failed: {install.stderr[-1500:]}"
    return CHECKOV


def _scan(checkov: Path, path: Path) -> dict:
    result = subprocess.run(
        [str(checkov), "--config-file", str(ROOT / ".checkov.yaml"), "-f", str(path), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def _failed(report: dict) -> list[str]:
    return [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]


def test_template_passes_checkov(checkov):
    report = _scan(checkov, ROOT / "template.yaml")
    assert report["summary"]["passed"] > 50
    assert not _failed(report), _failed(report)


def test_transformed_template_passes_checkov(checkov, tmp_path, monkeypatch):
    """The SAM transform generates the roles and Lambda functions; scan those too."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    doc = copy.deepcopy(tm.load_template(ROOT / "template.yaml"))
    for res in doc["Resources"].values():
        props = res.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = "s3://artifacts/" + props[key].strip("/")
    out = tmp_path / "transformed.json"
    out.write_text(json.dumps(transform(doc, {}, NoManagedPolicies())))
    report = _scan(checkov, out)
    assert report["summary"]["passed"] > 100
    assert not _failed(report), _failed(report)


def test_every_suppression_is_justified():
    template = tm.load_template(ROOT / "template.yaml")
    skips = [
        (logical_id, skip)
        for logical_id, res in template["Resources"].items()
        for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    ]
    assert skips, "expected the documented suppressions"
    for logical_id, skip in skips:
        assert skip["id"].startswith(("CKV_", "CKV2_")), (logical_id, skip)
        assert len(skip.get("comment", "").split()) >= 8, f"{logical_id} {skip['id']}: say why it is safe"
    text = (ROOT / "template.yaml").read_text()
    for line in text.splitlines():  # inline `# checkov:skip=ID:reason` comments need a reason too
        if "checkov:skip=" in line:
            assert len(line.split("checkov:skip=", 1)[1].split(":", 1)) == 2, line
