"""Models a user writes: plain ``torch.nn.Module`` classes, built by ``model=custom model._target_=...``."""

from __future__ import annotations

from torch import nn


class TinyNet(nn.Module):
    """A one-hidden-layer network. privtrain passes ``n_inputs`` and ``n_classes`` because the constructor asks."""

    def __init__(self, n_inputs: int, n_classes: int, width: int = 32):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_inputs, width), nn.Tanh(), nn.Linear(width, n_classes))

    def forward(self, x):
        return self.layers(x)


class BatchNormNet(nn.Module):
    """BatchNorm mixes the examples of a batch, so DP-SGD cannot train it; ``model.fix=true`` swaps it for GroupNorm."""

    def __init__(self, n_inputs: int, n_classes: int, width: int = 32):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_inputs, width), nn.BatchNorm1d(width), nn.Tanh(), nn.Linear(width, n_classes)
        )

    def forward(self, x):
        return self.layers(x)
