import ast
from pathlib import Path

import pytest
import torch

from rlhfkit.losses import masked_mean, masked_var

VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # valid entries: 1, 2, 4


def test_masked_mean_all():
    # (1 + 2 + 4) / 3 = 7/3
    assert masked_mean(VALUES, MASK).item() == pytest.approx(7 / 3)


def test_masked_mean_bool_mask_matches_float():
    assert masked_mean(VALUES, MASK.bool()).item() == pytest.approx(7 / 3)


def test_masked_mean_dim():
    # row 0: (1 + 2) / 2 = 1.5 ; row 1: 4 / 1 = 4
    out = masked_mean(VALUES, MASK, dim=1)
    assert out.shape == (2,)
    torch.testing.assert_close(out, torch.tensor([1.5, 4.0]))


def test_masked_mean_empty_is_exact_zero_without_nan():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    mask = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0
    per_row = masked_mean(values, mask, dim=1)  # row 0 empty -> 0 ; row 1: 3 / 1 = 3
    torch.testing.assert_close(per_row, torch.tensor([0.0, 3.0]), check_dtype=False)
    per_row.sum().backward()
    # only values[1, 0] is counted, with weight 1 / 1
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, 0.0], [1.0, 0.0]]))


def test_masked_mean_ignores_inf_and_nan_in_padding():
    values = torch.tensor([[1.0, float("inf")], [3.0, float("nan")]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # (1 + 3) / 2 = 2
    assert masked_mean(values, mask).item() == pytest.approx(2.0)


def test_masked_var_biased_and_unbiased():
    # valid entries 1, 2, 4: mean = 7/3
    # deviations -4/3, -1/3, 5/3 -> squares 16/9 + 1/9 + 25/9 = 42/9
    # biased   = (42/9) / 3 = 14/9
    # unbiased = (42/9) / 2 = 7/3   (= biased * 3/2, Bessel's correction n/(n-1))
    assert masked_var(VALUES, MASK, unbiased=False).item() == pytest.approx(14 / 9)
    assert masked_var(VALUES, MASK).item() == pytest.approx(7 / 3)
    assert masked_var(VALUES, MASK).item() == pytest.approx(torch.tensor([1.0, 2.0, 4.0]).var().item())


def test_masked_var_single_entry():
    mask = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert masked_var(VALUES, mask, unbiased=False).item() == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(VALUES, mask, unbiased=True)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        masked_mean(VALUES, MASK[:, :2])
    with pytest.raises(ValueError, match="same shape"):
        masked_var(VALUES, MASK[:1])


def test_losses_and_algos_never_import_transformers():
    root = Path(__file__).resolve().parents[3] / "rlhfkit"
    files = list((root / "losses").glob("*.py")) + list((root / "algos").glob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in {"torch", "rlhfkit", "__future__", "math", "typing"}, f"{path}: imports {name}"
