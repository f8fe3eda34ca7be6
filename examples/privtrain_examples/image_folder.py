"""Write an image folder (one subfolder per class) for ``dataset=image_folder``.

python -m privtrain_examples.image_folder OUT [--n 600] [--size 32] [--seed 0]   # shapes: circles vs squares vs crosses
python -m privtrain_examples.image_folder OUT --digits                           # scikit-learn's digits as PNGs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def shapes(out: Path, n: int = 600, size: int = 32, seed: int = 0) -> Path:
    """``n`` grey images of a circle, a square or a cross at a random place and scale, with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        label = ("circle", "square", "cross")[i % 3]
        r = rng.uniform(size * 0.15, size * 0.3)
        cy, cx = rng.uniform(r, size - r, 2)
        if label == "circle":
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        elif label == "square":
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        else:
            mask = ((abs(yy - cy) <= r / 4) & (abs(xx - cx) <= r)) | ((abs(xx - cx) <= r / 4) & (abs(yy - cy) <= r))
        pixels = np.clip(mask * 200 + rng.normal(30, 25, (size, size)), 0, 255).astype(np.uint8)
        (out / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(out / label / f"{i:05d}.png")
    return out


def digits(out: Path) -> Path:
    """scikit-learn's digits (8x8, 0..16) as 8-bit PNGs, one folder per digit."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target)):
        (out / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(out / str(label) / f"{i:05d}.png")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--digits", action="store_true")
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    digits(out) if args.digits else shapes(out, args.n, args.size, args.seed)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
