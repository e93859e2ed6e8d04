"""Load a function's app.py by path (as Lambda and `clearing invoke` do) and a fake Lambda context."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ClearingPipelineTest")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "test")


def load_handler(function: str):
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{function}_app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


def load_event(name: str) -> dict:
    return json.loads((ROOT / "events" / name).read_text())


@dataclass
class FakeContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000
