"""ARCHITECTURE.md seam: rlhfkit.feedback never imports torch (only `generate_items` does, when called)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "api",
    "agreement",
    "cli",
    "db",
    "export",
    "generate",
    "items",
    "judgements",
    "queue",
    "server",
    "store",
    "tables",
    "views",
    "__main__",
]


def test_the_app_never_imports_torch():
    imports = "; ".join(f"import rlhfkit.feedback.{m}" for m in MODULES)
    code = f"import sys; {imports}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
