"""The package's seams (ARCHITECTURE.md), read from the source files' imports, lazy ones included.

- ``losses/`` and ``algos/`` import torch only (besides the standard library and each other);
- ``feedback/`` never imports torch, transformers, ``models/``, ``rollout/`` or ``trainers/``;
- ``data/`` imports no model code (transformers, peft, ``models/``, ``rollout/``, ``rewards/``, ...);
- nothing below ``trainers/`` imports ``trainers/``;
- ``eval/`` and ``loop/`` reach data through ``data/``: nothing they take from ``trainers/`` is a name of
  ``rlhfkit.data``.
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rlhfkit"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
MODEL_CODE = ("transformers", "peft", "accelerate", "rlhfkit.models", "rlhfkit.rollout", "rlhfkit.trainers")
BELOW_TRAINERS = ("data", "models", "losses", "algos", "rollout", "rewards", "feedback", "stats", "config")


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import in a file, at any depth (functions' lazy ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _data_names(root: Path) -> set[str]:
    """Every top-level name that a module of ``rlhfkit/data`` defines."""
    names = set()
    for path in (root / "data").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def seam_violations(root: Path) -> list[str]:
    """Every import under the package folder ``root`` that breaks a seam, as ``file:line: what``."""
    data_names = _data_names(root)
    bad = []
    for path in sorted(root.rglob("*.py")):
        part = path.relative_to(root).parts[0].removesuffix(".py")
        for line, module, names in _imports(path):
            where = f"{path.relative_to(root.parent)}:{line}: {module}"
            if part in ("losses", "algos"):
                if not (
                    module.split(".")[0] in STDLIB
                    or _under(module, "torch", "rlhfkit.losses", "rlhfkit.algos")
                ):
                    bad.append(f"{where} ({part}/ imports torch only)")
            if part == "feedback" and _under(module, "torch", *MODEL_CODE):
                bad.append(f"{where} (feedback/ never imports torch or model code)")
            if part == "data" and _under(
                module, *MODEL_CODE, "rlhfkit.rewards", "rlhfkit.losses", "rlhfkit.algos"
            ):
                bad.append(f"{where} (data/ imports no model code)")
            if part in BELOW_TRAINERS and _under(module, "rlhfkit.trainers"):
                bad.append(f"{where} ({part} is below trainers/)")
            if part in ("eval", "loop") and _under(module, "rlhfkit.trainers") and set(names) & data_names:
                bad.append(f"{where} ({part}/ reaches data through data/, not trainers/)")
    return bad


def test_the_package_keeps_its_seams():
    assert seam_violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("module", "line", "seam"),
    [
        ("losses/ppo.py", "import transformers", "imports torch only"),
        ("algos/gae.py", "import numpy as np", "imports torch only"),
        ("feedback/store.py", "import torch", "feedback/ never imports"),
        ("feedback/api.py", "    from rlhfkit.rollout.sampling import rollout", "feedback/ never imports"),
        ("data/loaders.py", "from rlhfkit.models.loading import load_policy", "data/ imports no model code"),
        ("rewards/spec.py", "from rlhfkit.trainers.runtime import setup_torch", "below trainers/"),
        ("eval/evaluate.py", "from rlhfkit.trainers.ppo import DataConfig", "through data/"),
    ],
)
def test_an_import_that_breaks_a_seam_is_found(tmp_path, module, line, seam):
    root = tmp_path / "rlhfkit"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "static"))
    path = root / module
    text = path.read_text()
    if line.startswith(" "):  # a lazy import, inside a function
        text += f"\n\ndef _added():\n{line}\n"
    else:
        text = text.replace(
            "from __future__ import annotations\n", f"from __future__ import annotations\n{line}\n", 1
        )
    path.write_text(text)
    found = seam_violations(root)
    assert len(found) == 1 and module in found[0] and seam in found[0], found


def test_the_readme_layout_matches_the_tree():
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    named = {word.split("/")[1] for word in layout.split() if word.startswith("rlhfkit/")}
    assert folders | {m for m in modules if f"rlhfkit/{m}" in layout} == named  # no folder missing or extra
    assert all(m in layout for m in modules), sorted(m for m in modules if m not in layout)
    for folder in folders:  # every module a folder's line names exists
        line = layout.split(f"rlhfkit/{folder} ", 1)[1].split("\nrlhfkit/", 1)[0]
        for word in line.replace(",", " ").replace("(", " ").split():
            if word.endswith(".py") and "*" not in word:
                assert (PACKAGE / folder / word).exists(), f"README Layout names {folder}/{word}"
