"""Boundaries the layout promises, read from the source: the hub names no provider, production
code never imports the sandboxes or the tests, plugins use the assessments domain's interface."""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGIN_KEYS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists())


def provider_names() -> list[str]:
    """Each shipped plugin's key and the provider word in it (``wecp_lever`` → ``lever``)."""
    names = set()
    for key in PLUGIN_KEYS:
        names.add(key)
        names.add(key.removeprefix("wecp_"))
    return sorted(names)


def files(folder: str, *suffixes: str) -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in suffixes and "__pycache__" not in p.parts)


def imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def test_there_are_plugins_to_check():
    assert PLUGIN_KEYS, "no plugin package under plugins/"


@pytest.mark.parametrize("path", files("hub", ".py", ".html", ".js", ".css", ".txt"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_of_the_hub_names_a_provider(path):
    """Code, templates and comments of hub/ alike: what a provider needs is the plugin's to say."""
    words = re.compile(r"(?<![a-z])(" + "|".join(map(re.escape, provider_names())) + r")(?![a-z])", re.IGNORECASE)
    hits = [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1) if words.search(line)]
    assert hits == [], f"{path.relative_to(ROOT)} names a provider:\n" + "\n".join(hits)


@pytest.mark.parametrize("path", files("hub", ".py") + files("plugins", ".py"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_production_code_never_imports_sandboxes_tests_or_benchmarks(path):
    bad = [name for name in imports(path) if name.split(".")[0] in ("sandboxes", "tests", "bench")]
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", files("plugins", ".py"), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_use_the_assessments_interface_not_its_models(path):
    allowed = ("hub.assessments.services", "hub.assessments.signals")
    bad = [name for name in imports(path) if name.startswith("hub.assessments")
           and name != "hub.assessments" and not name.startswith(allowed)
           and name not in ("hub.assessments.services", "hub.assessments.signals")]
    # ``from hub.assessments import services`` reads as hub.assessments + hub.assessments.services.
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("key", PLUGIN_KEYS)
def test_plugins_do_not_import_each_other(key):
    others = [k for k in PLUGIN_KEYS if k != key]
    for path in files(f"plugins/{key}", ".py"):
        bad = [n for n in imports(path) if any(n.startswith(f"plugins.{o}") for o in others)]
        assert bad == [], f"{path.relative_to(ROOT)} imports another plugin: {bad}"


def test_the_job_module_stands_below_the_inbox_and_intake():
    """hub.jobs knows nothing of deliveries: no import circle between jobs, outbox, inbox, webhooks."""
    order = ["hub.outcomes", "hub.jobs", "hub.outbox", "hub.inbox", "hub.webhooks"]
    for i, module in enumerate(order):
        path = ROOT / (module.replace(".", "/") + ".py")
        above = order[i + 1:]
        tree = ast.parse(path.read_text())
        # Top-level imports only: a function may import upward at run time without a circle at import.
        names = []
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                target = node.module if node.level == 0 else "hub." + (node.module or "")
                names.append(target)
            elif isinstance(node, ast.Import):
                names += [a.name for a in node.names]
        assert not [n for n in names if n in above], f"{module} imports {[n for n in names if n in above]}"


@pytest.mark.parametrize("path", [p for p in files("tests/hub", ".py") if p.name != "test_boundaries.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_hubs_own_tests_lean_on_no_shipped_plugin(path):
    """The hub's tests run with the tests' two example plugins (and those of ``HUB_TEST_PLUGINS``): they import no shipped plugin or provider sandbox and name no provider."""
    bad = [name for name in imports(path) if name.split(".")[0] == "plugins"
           or (name.startswith("sandboxes.") and name.split(".")[1] in provider_names())]
    assert bad == [], f"{path.name} imports a shipped plugin or a provider's sandbox: {bad}"
    text = path.read_text().lower()
    named = [name for name in provider_names() if re.search(rf"\b{re.escape(name)}\b", text)]
    assert named == [], f"{path.name} names a provider: {named} (move the test to tests/plugins/<key>/)"


def hub_import_graph() -> dict[str, set[str]]:
    """Module → the hub modules it imports, at the top or inside a function (a deferred import
    is still a dependency: it only moves the circle to run time)."""
    modules = {}
    for path in files("hub", ".py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                named = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
                found = named or [target]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(f for f in found if f in modules and f != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a circle (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_inside_the_hub():
    """Issue #41, 5: the contract and mechanisms at the bottom, domain services above them, pages
    on top (before: sessions ↔ security, plugin ↔ jobs, mail → outbox → connections →
    assessments.services → mail, the package ↔ cli and work)."""
    graph = hub_import_graph()
    assert len(graph) > 30 and "hub.outbox" in graph["hub.mail"]  # it reads what it should
    assert circles(graph) == []
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # and can see one
