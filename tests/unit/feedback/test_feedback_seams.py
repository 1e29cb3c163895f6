"""ARCHITECTURE.md seam: rlhfkit.feedback never imports torch, even indirectly (tests/unit/test_layout.py
checks its direct imports); every module of the package is imported in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rlhfkit.feedback

MODULES = sorted(
    p.stem for p in (Path(rlhfkit.feedback.__file__).parent).glob("*.py") if p.stem != "__init__"
)


def test_the_app_never_imports_torch():
    imports = "; ".join(f"import rlhfkit.feedback.{m}" for m in MODULES)
    code = f"import sys; {imports}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
