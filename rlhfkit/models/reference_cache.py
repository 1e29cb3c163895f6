"""Reference log-probabilities computed once and kept on disk, keyed by what they depend on.

A cache file holds one float32 tensor and, in its safetensors metadata, the key it was computed for.
The key is a SHA-256 over the reference model's weights (:func:`weights_fingerprint`) and whatever else
the caller names (the token ids of the pairs, which fix the data, tokenizer, template and lengths; the
dtype). A different model, data set or length limit gives a different key, so a stale file is never
read: it is simply not found.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import safe_open, save_file
from torch import nn

CACHE_FOLDER = "reference_cache"


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) of every parameter and buffer of ``model``: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cache_key(*parts: Any) -> str:
    """SHA-256 (hex) of JSON-serialisable ``parts`` (lists of token ids, names, numbers)."""
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def cache_path(output_dir: str | os.PathLike, key: str, stem: str = "reference_logps") -> Path:
    """``<output_dir>/reference_cache/<stem>-<key[:16]>.safetensors``.

    A sub-folder, so that no stray ``*.safetensors`` file sits beside the model's own weights.
    """
    return Path(output_dir) / CACHE_FOLDER / f"{stem}-{key[:16]}.safetensors"


def load_cached(path: str | os.PathLike, key: str) -> torch.Tensor | None:
    """The tensor stored at ``path`` if the file exists and was written for ``key``, else None."""
    if not Path(path).exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
        return f.get_tensor("logps")


def save_cached(path: str | os.PathLike, key: str, logps: torch.Tensor) -> Path:
    """Write ``logps`` with its ``key`` to ``path`` atomically (temporary file, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({"logps": logps.detach().float().contiguous()}, tmp, metadata={"key": key})
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
