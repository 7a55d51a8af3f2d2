"""The package's layers point one way: each subpackage imports only from the ones below it, and
facts sit at the bottom. Read from the source (ast), so a new upward import fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "llmbuild"

# what each part of the package may import from llmbuild (besides itself and the package root,
# which holds only the version and the package folder); the README in src/llmbuild says why
ALLOWED = {
    "errors": set(),
    "facts": {"errors"},
    "files": {"errors", "facts"},
    "config": {"errors", "facts", "files", "chat"},   # the Modelfile's quoting rule, checked at composition
    "chat": {"errors", "facts", "files"},
    "dataset": {"errors", "facts", "chat"},
    "evaluation": {"errors", "facts", "chat"},
    "report": {"errors", "facts", "files", "evaluation"},
    "adapters": {"errors", "facts", "files", "chat", "evaluation"},
    "sizing": {"errors", "facts", "files", "adapters"},
    "store": {"errors", "facts", "files"},
    "plan": {"errors", "facts", "files", "config", "store"},
    # sizing: the batch auto_batch chooses, the same function `doit size` shows (sizing/choice.py)
    "stages": {"errors", "facts", "files", "chat", "dataset", "evaluation", "report", "adapters", "sizing", "store"},
    "review": {"errors", "facts", "files", "config", "store", "plan"},
    "cli": {"errors", "facts", "files", "config", "chat", "dataset", "evaluation", "report", "adapters", "sizing",
            "store", "plan", "stages", "review"},
}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "_llama_cpp" or relative == Path("__init__.py"):
            continue
        yield path, relative.parts[0].removesuffix(".py")


def imported_parts(path: Path, source: str | None = None) -> set[str]:
    """The top-level parts of llmbuild that the module at `path` imports (absolute or relative)."""
    relative = path.relative_to(PACKAGE)
    depth = len(relative.parts) - 1   # folders below the package root
    found = set()
    source = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:   # relative: climb to the package root, then follow the module path
                if node.level - 1 > depth:
                    continue
                here = list(relative.parts[:-1])[:depth - (node.level - 1)]
                target = here + (node.module.split(".") if node.module else [])
                if target:
                    found.add(target[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "llmbuild":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "llmbuild" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {part for _, part in modules()}
    assert parts <= set(ALLOWED), f"give {sorted(parts - set(ALLOWED))} a layer in ALLOWED"


@pytest.mark.parametrize("path, part", list(modules()), ids=lambda value: str(value).rsplit("llmbuild/", 1)[-1])
def test_imports_point_down(path, part):
    upward = imported_parts(path) - ALLOWED[part] - {part, "PACKAGE_DIR", "__version__"}
    assert not upward, f"{path.relative_to(PACKAGE)} ({part}) imports {sorted(upward)}, which it may not"


def test_adapters_take_plain_values():
    """The code that runs foreign tools reads no configuration: it is handed values."""
    for path, part in modules():
        if part == "adapters":
            assert not {"config", "plan", "stages", "cli"} & imported_parts(path), path.name
            assert "omegaconf" not in path.read_text(encoding="utf-8"), f"{path.name} takes config objects"


@pytest.mark.parametrize("source", [
    "from ..config.derived import chat_family",
    "from .. import config",
    "from llmbuild.config import schema",
    "import llmbuild.plan.keys",
    "def f():\n    from ..stages import train",
])
def test_a_planted_upward_import_is_found(source):
    """The rule is only as good as its import reader."""
    planted = PACKAGE / "adapters" / "planted.py"
    assert imported_parts(planted, source) & {"config", "plan", "stages"}
    down = "from ..facts import layout\nfrom .process import run_logged"
    assert imported_parts(planted, down) == {"facts", "adapters"}


def _documented_orders() -> dict[str, list[str]]:
    """The layer order as each document lists it, bottom first."""
    root = PACKAGE.parent.parent
    walk = (PACKAGE / "README.md").read_text(encoding="utf-8")
    tree = walk.split("```", 2)[1]
    package_readme = [m[1] for m in re.finditer(r"^(\w+)(?:\.py|/)\s", tree, re.M)]
    init = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8")))
    listed = re.findall(r"^    ([a-z]+(?:, [a-z]+)*)\s{2,}", init, re.M)
    package_doc = [name for line in listed for name in line.split(", ")]
    readme = (root / "README.md").read_text(encoding="utf-8")
    found = re.search(r"the package, layered: (.*?) \(src/llmbuild/README\.md", readme, re.S)
    project_readme = ["errors", *re.split(r"[,/]\s*", " ".join(found[1].split()))]
    return {"src/llmbuild/README.md": package_readme, "llmbuild/__init__.py": package_doc, "README.md": project_readme}


@pytest.mark.parametrize("document", ["src/llmbuild/README.md", "llmbuild/__init__.py", "README.md"])
def test_the_documented_layer_order_is_the_one_imports_keep(document):
    order = _documented_orders()[document]
    assert sorted(order) == sorted(ALLOWED), f"{document} lists {order}"
    for part in order:
        below = set(order[:order.index(part)])
        assert ALLOWED[part] <= below, f"{document}: {part} imports {sorted(ALLOWED[part] - below)}, listed above it"
