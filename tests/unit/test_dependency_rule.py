"""The dependency rule of what ships where (docs/architecture.md, "Layout: what ships where").

- `clearing` (the core, the Lambda layer) imports neither `clearing_fix` nor `clearing_tools`;
- `clearing_fix` (the FIX proxy image) does not import `clearing_tools`;
- `clearing.domain` imports only itself, the standard library, pydantic and orjson (a parser: no I/O);
- inside the core, layers point inwards: `clearing.repositories` (key layout and item shapes) imports
  only the domain, the ports and itself; `clearing.services` imports the domain, the ports, the
  repositories, itself and the shared plain modules (topics, config, messages, the FIX gateway
  protocol), never an adapter, the API, the bootstrap or the Lambda handler glue;
  `clearing.adapters` never imports the services, the API or the bootstrap;
- the core and the Lambda entry points import none of the tools' third-party libraries;
- the local runtime (`clearing_tools.local`) does not import the CLI (`clearing_tools.cli`).

Read from the source with `ast`, every import counted (module level and inside functions), so a lazy
import that would only fail in Lambda is caught here; one more test imports every core module with
the other two packages made unimportable.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOTS = {
    "clearing": ROOT / "layers" / "clearing_core",
    "clearing_fix": ROOT / "proxy",
    "clearing_tools": ROOT / "tools",
}
DOMAIN_MAY_IMPORT = {"pydantic", "pydantic_core", "orjson"}
# what only the tools or the proxy use: never needed by the layer
TOOL_LIBRARIES = {"rich", "yaml", "simplefix", "moto", "waitress", "matplotlib", "jwt", "flask", "selenium"}


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package`."""
    base = ROOTS[package]
    found = {}
    for path in sorted((base / package).rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved against `module`)."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            # `from clearing import bootstrap` imports clearing.bootstrap
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def top(name: str) -> str:
    return name.split(".", 1)[0]


def violations(package: str, allowed) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, path in modules(package).items()
        for name in imports(module, path)
        if not allowed(module, name)
    )


def test_every_package_is_found():
    assert "clearing.domain.orders" in modules("clearing")
    assert "clearing_fix.proxy" in modules("clearing_fix")
    assert "clearing_tools.cli.main" in modules("clearing_tools")


def test_the_core_imports_neither_the_proxy_nor_the_tools():
    assert violations("clearing", lambda m, name: top(name) not in {"clearing_fix", "clearing_tools"}) == []


def test_the_proxy_does_not_import_the_tools():
    assert violations("clearing_fix", lambda m, name: top(name) != "clearing_tools") == []


def test_the_domain_imports_only_itself_the_stdlib_and_pydantic():
    def allowed(module: str, name: str) -> bool:
        if not module.startswith("clearing.domain"):
            return True
        return (
            name == "clearing.domain"
            or name.startswith("clearing.domain.")
            or top(name) in sys.stdlib_module_names
            or top(name) in DOMAIN_MAY_IMPORT
        )

    assert violations("clearing", allowed) == []


def _core_layer_rule(layer: str, may_import: set[str]):
    """Modules of `clearing.{layer}` import, of the core, only `clearing.{x}` for x in may_import."""

    def allowed(module: str, name: str) -> bool:
        if not module.startswith(f"clearing.{layer}") or top(name) != "clearing" or name == "clearing":
            return True
        return name.split(".")[1] in may_import

    return violations("clearing", allowed)


def test_repositories_import_only_the_domain_and_the_ports():
    assert "clearing.repositories.orders" in modules("clearing")
    assert _core_layer_rule("repositories", {"domain", "ports", "repositories"}) == []


def test_services_import_no_adapter_api_or_bootstrap():
    # messages: the typed wire contracts (clearing.messages, issue 15 item 2), plain TypedDicts
    allowed = {"domain", "ports", "repositories", "services", "messages", "topics", "config", "fix"}
    assert _core_layer_rule("services", allowed) == []


def test_adapters_never_import_the_services():
    allowed = {"domain", "ports", "repositories", "adapters", "config"}
    assert _core_layer_rule("adapters", allowed) == []


def test_the_core_and_the_functions_use_no_tool_library():
    assert violations("clearing", lambda m, name: top(name) not in TOOL_LIBRARIES) == []
    offenders = []
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        for name in imports("app", app):
            if top(name) in TOOL_LIBRARIES | {"clearing_fix", "clearing_tools"}:
                offenders.append(f"{app.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_the_local_runtime_does_not_import_the_cli():
    def allowed(module: str, name: str) -> bool:
        return not (module.startswith("clearing_tools.local") and top_two(name) == "clearing_tools.cli")

    assert violations("clearing_tools", allowed) == []


def top_two(name: str) -> str:
    return ".".join(name.split(".")[:2])


@pytest.mark.parametrize(
    ("package", "blocked"),
    [("clearing", ("clearing_fix", "clearing_tools")), ("clearing_fix", ("clearing_tools",))],
)
def test_every_module_imports_without_the_packages_it_must_not_need(package, blocked):
    """What the layer (or the proxy image) would do: import each module with the others absent."""
    code = (
        "import importlib, sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None  # ImportError on any import of it\n"
        f"for module in {sorted(modules(package))!r}: importlib.import_module(module)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
