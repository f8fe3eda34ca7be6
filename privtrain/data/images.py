"""``dataset=image_folder``: one subfolder per class, as torchvision's ``ImageFolder``.

Preprocessing uses only declared public constants: every image is converted to ``dataset.image.channels``
(1: grey, 3: RGB), resized to ``dataset.image.size`` and normalised with the declared per-channel
``mean`` and ``std`` (on [0, 1] pixel values). The classes are the subfolder names (the folder layout is
the declaration). Nothing is computed from the pixels themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from privtrain.errors import UserError, user_paths

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


MAX_SIZE = 4096  # pixels a side: beyond it, one image is more than a small DP model can take


def _image_settings(image: dict) -> tuple[int, tuple[int, int], np.ndarray, np.ndarray]:
    """(channels, (height, width), mean, std) from ``dataset.image``, checked.

    Raises:
        UserError: a value that is not a whole number where one is needed, or out of range.
    """
    how = (
        "dataset.image: give channels (1 or 3), size [height, width] in pixels (1..4096 each), and one finite "
        "mean and one finite std (> 0) per channel, e.g. dataset.image.size=[16,16] dataset.image.mean=[0.5] "
        "dataset.image.std=[0.5]."
    )
    try:
        channels = image.get("channels", 3)
        size = tuple(image.get("size", (32, 32)))
        whole = [channels, *size]
        if any(isinstance(v, bool) or not float(v).is_integer() for v in whole):
            raise UserError(how)
        channels, size = int(channels), tuple(int(v) for v in size)
        mean = np.asarray(image.get("mean", [0.5] * channels), dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(image.get("std", [0.5] * channels), dtype=np.float32).reshape(-1, 1, 1)
    except (TypeError, ValueError, OverflowError):
        raise UserError(how) from None
    if (
        channels not in (1, 3)
        or len(size) != 2
        or not all(1 <= v <= MAX_SIZE for v in size)
        or mean.shape[0] != channels
        or std.shape[0] != channels
        or not np.isfinite(mean).all()
        or not np.isfinite(std).all()
        or not (std > 0).all()
    ):
        raise UserError(how)
    return channels, size, mean, std


def load_image_folder(spec):
    """(table, schema, image shape) of an image folder. Raises :class:`UserError` on bad input."""
    from PIL import Image

    from privtrain.data.arrays import table

    root = Path(str(spec.path)).expanduser() if spec.path else None
    with user_paths("dataset.path"):
        found = root is not None and root.is_dir()
    if not found:
        raise UserError(
            f"dataset.path={spec.path!r} is not a folder; point it at a folder with one subfolder per "
            "class (as torchvision's ImageFolder)."
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise UserError(
            f"dataset.path={str(root)!r} has {len(classes)} class folder(s); an image classifier needs "
            "at least 2 subfolders, one per class."
        )
    channels, size, mean, std = _image_settings(dict(spec.image or {}))
    xs, labels = [], []
    for label in classes:
        for file in sorted((root / label).iterdir()):
            if file.suffix.lower() not in SUFFIXES:
                continue
            try:
                with Image.open(file) as img:
                    img = img.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]))
                    pixels = np.asarray(img, dtype=np.float32) / 255.0
            except OSError:
                raise UserError(f"dataset.path: {file.relative_to(root)} is not a readable image; remove it.") from None
            pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
            xs.append((pixels - mean) / std)
            labels.append(label)
    if not xs:
        raise UserError(f"dataset.path={str(root)!r} holds no image ({', '.join(SUFFIXES)}) in its class folders.")
    note = (
        f"images: {channels} channel(s) resized to {size[0]}x{size[1]} and normalised with the declared mean "
        f"{mean.ravel().tolist()} and std {std.ravel().tolist()}; the classes are the folder names"
    )
    frame, schema = table(np.stack(xs), labels, tuple(classes), notes=(note,), kind="images")
    return frame, schema, (channels, *size)
