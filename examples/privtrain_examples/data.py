"""A dataset a user writes: a map-style ``torch.utils.data.Dataset`` of (x, y), for ``dataset=custom``."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class Stripes(Dataset):
    """``n`` noisy 1x8x8 images: label 0 has horizontal stripes, label 1 vertical ones."""

    def __init__(self, n: int = 600, noise: float = 1.5, seed: int = 0):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 2, n)
        base = np.zeros((2, 8, 8), np.float32)
        base[0, ::2, :] = 1.0
        base[1, :, ::2] = 1.0
        shift = rng.integers(0, 2, n)  # stripes start on even or odd lines
        images = np.stack([np.roll(base[y], s, axis=1 - y) for y, s in zip(labels, shift)])
        images = images + rng.normal(0.0, noise, images.shape).astype(np.float32)
        self.x = torch.from_numpy(images[:, None].astype(np.float32))
        self.y = torch.from_numpy(labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]
