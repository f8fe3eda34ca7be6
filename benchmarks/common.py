"""Helpers shared by the benchmark scripts: output folder, tables, the machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent / "out"


def out_dir(name: str) -> Path:
    path = OUT / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def mean_std_table(frame: pd.DataFrame, rows: str, cols: str, value: str, fmt: str = "{:.3f}") -> pd.DataFrame:
    """A pivot of 'mean ± std' strings."""
    agg = frame.groupby([rows, cols])[value].agg(["mean", "std"]).reset_index()
    agg["cell"] = [f"{fmt.format(m)} ± {fmt.format(0.0 if pd.isna(s) else s)}" for m, s in zip(agg["mean"], agg["std"])]
    return agg.pivot(index=rows, columns=cols, values="cell")
