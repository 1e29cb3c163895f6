"""Reward normalisation rescales the scalar head so that rewards become (r - mean) / std."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlhfkit.models.reward import normalize_reward_head


class _TwoHeads(nn.Module):
    def __init__(self, bias: bool):
        super().__init__()
        self.body = nn.Linear(2, 3)
        self.score = nn.Linear(3, 1, bias=bias)
        with torch.no_grad():
            self.score.weight.copy_(torch.tensor([[2.0, 0.0, 4.0]]))
            if bias:
                self.score.bias.fill_(6.0)

    def forward(self, h):  # h: (N, 3) features fed straight to the head
        return self.score(h).squeeze(-1)


def test_head_with_bias_is_centred_and_scaled():
    model = _TwoHeads(bias=True)
    h = torch.tensor([[1.0, 5.0, 0.5]])
    # before: 2*1 + 0*5 + 4*0.5 + 6 = 10
    assert model(h).item() == pytest.approx(10.0)
    assert normalize_reward_head(model, mean=2.0, std=4.0) is True
    # after: (10 - 2) / 4 = 2
    assert model(h).item() == pytest.approx(2.0)


def test_head_without_bias_is_only_scaled():
    model = _TwoHeads(bias=False)
    h = torch.tensor([[1.0, 5.0, 0.5]])
    # before: 2 + 2 = 4; after scaling by 1/4: 1 (the mean cannot be removed without a bias)
    assert normalize_reward_head(model, mean=2.0, std=4.0) is False
    assert model(h).item() == pytest.approx(1.0)


def test_bad_std_and_missing_head():
    with pytest.raises(ValueError, match="std"):
        normalize_reward_head(_TwoHeads(bias=True), mean=0.0, std=0.0)
    with pytest.raises(ValueError, match="no one-output linear head"):
        normalize_reward_head(nn.Sequential(nn.Linear(2, 2)), mean=0.0, std=1.0)
