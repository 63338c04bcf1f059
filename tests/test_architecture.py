"""medseg's layering (docs/concepts/design.md, "Layers"): no import cycle between its parts, a
lower layer never imports a higher one, no GUI toolkit anywhere, the one lazy-import helper,
and `import medseg` / `medseg --help` load no torch. The napari plugin uses public names only.

The import graph is read from the source with ``ast`` (nothing is imported): every ``import``
counts, also inside functions, except under ``if TYPE_CHECKING:``; the targets of the lazy
export tables (``lazy_exports(__name__, {...})`` of :mod:`medseg._lazy`) count too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers import REPO

MEDSEG = REPO / "medseg"
PLUGIN = REPO / "napari_plugin" / "napari_medseg"

#: The layers, lowest first. A part (a subpackage, or a module directly under medseg/) may import
#: parts of its own layer or of lower layers, never of a higher one, and never in a cycle.
LAYERS: list[tuple[str, set[str]]] = [
    ("core", {"medseg._version", "medseg._lazy", "medseg.errors", "medseg.config", "medseg.geometry",
              "medseg.volume", "medseg.signals", "medseg.threads", "medseg.progress_lines"}),
    ("io", {"medseg.io"}),
    ("plans", {"medseg.plans"}),            # the plan file: schema + YAML (derived in medseg.data.plan)
    ("preprocess", {"medseg.preprocess"}),
    ("data", {"medseg.data"}),
    ("metrics", {"medseg.metrics", "medseg.overlay", "medseg.demo_summary"}),
    ("model", {"medseg.model"}),            # what train and predict share: config, network, checkpoint, windows
    ("train, predict", {"medseg.train", "medseg.predict"}),
    ("instance", {"medseg.instance",        # the Mask R-CNN: uses the U-Net's training and prediction machinery
                  "medseg.nnunet"}),        # nnU-Net model folders served through medseg's prediction machinery
    ("report, review", {"medseg.report",   # build_report: a batch's folder -> pictures, metrics, lesion tables
                        "medseg.review"}),
    ("cli", {"medseg.cli", "medseg.__main__"}),
    ("facade", {"medseg"}),                 # medseg/__init__.py: the public names; registers the model kinds
]
LAYER_OF = {part: i for i, (_, parts) in enumerate(LAYERS) for part in parts}

GUI = {"napari", "napari_medseg", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy"}

#: What the napari plugin may import from medseg: these modules, names in their ``__all__``.
PUBLIC = {"medseg", "medseg.errors", "medseg.geometry", "medseg.volume", "medseg.io", "medseg.metrics",
          "medseg.predict", "medseg.preprocess", "medseg.review"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """``medseg.io.nifti`` -> ``medseg.io``; ``medseg.volume`` -> itself; ``medseg`` -> the facade."""
    return ".".join(module.split(".")[:2])


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (REPO / rel).with_suffix(".py").is_file() or (REPO / rel / "__init__.py").is_file()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _walk(node: ast.AST):
    """``ast.walk`` without the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` for every import in ``path`` (relative imports resolved; for
    ``from medseg import x`` a submodule ``x`` is the target; lazy export tables included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            subs = [n for n in names if _exists(f"{target}.{n}")]
            out += [(f"{target}.{n}", [], node.lineno) for n in subs]
            if len(subs) < len(names):
                out.append((target, [n for n in names if n not in subs], node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "lazy_exports":
            table = node.args[1] if len(node.args) == 2 else None
            if isinstance(table, ast.Name):  # lazy_exports(__name__, _LAZY): the module's dict literal
                table = next((n.value for n in tree.body if isinstance(n, ast.Assign)
                              and any(getattr(t, "id", None) == table.id for t in n.targets)), None)
            assert isinstance(table, ast.Dict), f"{path}:{node.lineno}: lazy_exports needs a dict literal"
            for value in table.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    mod, _, attr = value.value.partition(":")
                    out.append((mod, [attr] if attr else [], node.lineno))
    return out


def medseg_files() -> list[Path]:
    return sorted(MEDSEG.rglob("*.py"))


def part_graph() -> dict[tuple[str, str], list[str]]:
    """``(from part, to part)`` -> the import sites (``file:line -> module``)."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in medseg_files():
        src = _part(_module_name(path))
        for target, _, line in imports(path):
            if target.split(".")[0] != "medseg":
                continue
            dst = _part(target)
            if dst != src:
                edges[(src, dst)].append(f"{path.relative_to(REPO)}:{line} -> {target}")
    return edges


def find_cycle(edges) -> list[str] | None:
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_every_part_has_a_layer():
    parts = {_part(_module_name(p)) for p in medseg_files()}
    unknown = sorted(parts - set(LAYER_OF))
    assert not unknown, f"{unknown}: give each new part of medseg a layer in LAYERS (and in docs/concepts/design.md)"
    gone = sorted(set(LAYER_OF) - parts)
    assert not gone, f"LAYERS names parts that do not exist: {gone}"


def test_no_import_cycle_between_parts():
    edges = part_graph()
    cycle = find_cycle(edges)
    if cycle:
        sites = "\n".join(f"  {a} -> {b}: {edges[(a, b)][0]}" for a, b in zip(cycle, cycle[1:]))
        pytest.fail(f"import cycle {' -> '.join(cycle)}:\n{sites}")


def test_lower_layers_never_import_higher_ones():
    bad = [f"{a} ({LAYERS[LAYER_OF[a]][0]}) imports {b} ({LAYERS[LAYER_OF[b]][0]}): {site}"
           for (a, b), sites in sorted(part_graph().items()) if LAYER_OF[a] < LAYER_OF[b] for site in sites]
    assert not bad, "a lower layer imports a higher one:\n" + "\n".join(bad)


def test_medseg_never_imports_a_gui_toolkit():
    bad = [f"{p.relative_to(REPO)}:{line} imports {mod}" for p in medseg_files()
           for mod, _, line in imports(p) if mod.split(".")[0] in GUI]
    assert not bad, "medseg must not import napari/Qt (the napari plugin is reached through its entry point):\n" + \
        "\n".join(bad)


#: Modules that still define their own module ``__getattr__`` (to be moved onto medseg._lazy).
OWN_GETATTR = {MEDSEG / "instance" / "__init__.py"}


def test_one_lazy_import_helper():
    """Lazy imports go through medseg._lazy (PEP 562 tables the graph above can read), not ad-hoc
    ``importlib.import_module`` strings or ``__import__`` calls."""
    bad = []
    for p in medseg_files():
        if p == MEDSEG / "_lazy.py":
            continue
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in ("import_module", "__import__"):
                    bad.append(f"{p.relative_to(REPO)}:{node.lineno} calls {name}")
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__" and p not in OWN_GETATTR:
                bad.append(f"{p.relative_to(REPO)}:{node.lineno} defines its own __getattr__; use medseg._lazy.lazy_exports")
    assert not bad, "\n".join(bad)


def _all_names(module: str) -> set[str]:
    rel = Path(*module.split("."))
    path = REPO / rel / "__init__.py" if (REPO / rel).is_dir() else (REPO / rel).with_suffix(".py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(getattr(t, "id", None) == "__all__" for t in targets) and node.value is not None:
            names = set()
            for elt in node.value.elts:
                if isinstance(elt, ast.Constant):
                    names.add(elt.value)
                elif isinstance(elt, ast.Starred):  # *_LAZY: a dict literal of the same module
                    names |= _dict_keys(path, elt.value.id)
            return names
    # no __all__: the module's own public top-level names
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def _dict_keys(path: Path, name: str) -> set[str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == name for t in targets) and isinstance(node.value, ast.Dict):
                return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return set()


def test_the_napari_plugin_uses_public_names_only():
    bad = []
    for p in sorted(PLUGIN.rglob("*.py")):
        for mod, names, line in imports(p):
            if mod.split(".")[0] != "medseg":
                continue
            where = f"{p.relative_to(REPO)}:{line}"
            if mod not in PUBLIC:
                bad.append(f"{where} imports the private module {mod}")
                continue
            public = _all_names(mod) | ({"__version__", "__all__"} if mod == "medseg" else {"__all__"})
            bad += [f"{where} imports {mod}.{n}, which is not in its __all__" for n in names
                    if n != "*" and n not in public]
    assert not bad, "\n".join(bad)


def _run(code: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


HEAVY = ("torch", "torchvision", "monai", "napari", "qtpy", "yaml")


def test_import_medseg_loads_no_torch():
    got = _run("import json, sys\nimport medseg\n"
               f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    assert got == [], f"`import medseg` imports {got}"


def test_medseg_help_loads_no_torch():
    code = ("import contextlib, io, json, sys\nfrom medseg.cli.main import main\n"
            "for argv in (['--help'], ['train', '--help'], ['predict', '--help'], ['review', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n            main(argv)\n        except SystemExit:\n            pass\n"
            f"print(json.dumps(sorted(m for m in {HEAVY[:-1]!r} if m in sys.modules)))")
    got = _run(code)
    assert got == [], f"`medseg --help` imports {got}"
