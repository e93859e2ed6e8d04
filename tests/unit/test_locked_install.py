"""The install is locked and the locks agree with each other (issue: a fresh machine that just works).

- uv.lock holds the resolution for every install path; the Lambda layer's requirements are exported
  from it (same versions, with hashes), so what `sam build` ships is what the tests ran;
- the moto internals the local DynamoDB launcher relies on exist in the installed moto, and a missing
  one fails with a message naming moto's version (clearing_tools/local/moto_compat.py);
- the venv running the tests is the lock's: the installed moto and kafka-python are the locked ones.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from clearing_tools.local import moto_compat

ROOT = Path(__file__).resolve().parents[2]
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
LOCKED = {p["name"]: p["version"] for p in LOCK["package"] if "version" in p}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_layer_requirements_are_the_locks_runtime_set_with_hashes():
    path = ROOT / "layers" / "clearing_core" / "requirements.txt"
    pins = _pins(path)
    text = path.read_text()
    assert pins, "the layer's requirements pin nothing"
    for name, pinned in pins.items():
        assert LOCKED.get(name) == pinned, (
            f"{name}=={pinned} in {path.name}, uv.lock has {LOCKED.get(name)}: make lock"
        )
    assert text.count("--hash=sha256:") >= len(pins), "every pin carries hashes"
    project = next(p for p in LOCK["package"] if p["name"] == "clearing-pipeline")
    runtime = {d["name"] for d in project["dependencies"]}
    missing = {n for n in runtime if n not in pins}
    assert not missing, f"runtime dependencies missing from the layer: {missing} (make lock)"
    # nothing from the local, proxy or dev extras ships to Lambda (tools-only libraries included)
    assert not {"moto", "pytest", "aws-sam-cli", "matplotlib", "ruff", "rich", "pyyaml", "simplefix"} & set(
        pins
    )


def test_the_proxy_image_installs_the_layers_set_plus_the_fix_codec():
    layer = _pins(ROOT / "layers" / "clearing_core" / "requirements.txt")
    proxy = _pins(ROOT / "requirements" / "proxy.txt")
    assert set(proxy) - set(layer) == {"simplefix"}
    assert all(proxy[n] == v for n, v in layer.items()), "the image and the layer pin the same versions"
    for name, pinned in proxy.items():
        assert LOCKED.get(name) == pinned, (
            f"{name}=={pinned} in requirements/proxy.txt, uv.lock has {LOCKED.get(name)}"
        )


def test_the_lock_pins_moto_and_kafka_python_and_this_venv_has_them():
    assert version("moto") == LOCKED["moto"], "this venv's moto is not the locked one: make install-dev"
    assert version("kafka-python") == LOCKED["kafka-python"]


def test_every_moto_internal_the_launcher_uses_exists():
    assert moto_compat.check() == version("moto")


def test_a_missing_moto_internal_fails_naming_the_moto_version(monkeypatch):
    import moto.core.responses as core_responses

    monkeypatch.delattr(core_responses, "method_names_from_class")
    with pytest.raises(moto_compat.MotoIncompatible) as info:
        moto_compat.check()
    message = str(info.value)
    assert f"moto {version('moto')}" in message
    assert "method_names_from_class" in message and "uv.lock" in message


def test_uv_and_checkov_are_pinned_by_hash():
    for name in ("uv.txt", "checkov.txt"):
        text = (ROOT / "requirements" / name).read_text()
        assert re.search(r"^(uv|checkov)==\d", text, re.M) and "--hash=sha256:" in text, name
