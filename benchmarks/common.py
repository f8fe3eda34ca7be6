"""Helpers shared by the benchmark scripts: output folder, tables, the machine."""

from __future__ import annotations

import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent / "out"


def out_dir(name: str) -> Path:
    path = OUT / name
    path.mkdir(parents=True, exist_ok=True)
    return path


# Python source for a timed child process: wrap(owner, name, label) records each call's seconds in `marks`.
WRAP = """
import functools, sys, time
t0 = time.perf_counter()
marks = []
def wrap(owner, name, label):
    f = getattr(owner, name)
    @functools.wraps(f)
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            marks.append((label, time.perf_counter() - t))
    setattr(owner, name, timed)
"""


def run_timed_child(source: str, project: Path, cache: Path) -> tuple[str, float]:
    """Run Python ``source`` (a WRAP-based timed run) as a fresh process in ``project`` with the SBOM cache at
    ``cache``; returns its stdout and the whole process's wall time. Exits on failure."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "PRIVTRAIN_CACHE": str(cache)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", source], cwd=project, capture_output=True, text=True, env=env)
    whole = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"privtrain run dp_sgd failed:\n{out.stderr[-2000:]}")
    return out.stdout, whole


@contextmanager
def temp_project():
    """A temporary project folder with its own ``.privtrain/`` (so its own ledger)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / ".privtrain").mkdir()
        yield project


def report(out: Path, text: str) -> Path:
    """Write ``text`` as the benchmark's README in ``out``, print it, and return ``out``."""
    (out / "README.md").write_text(text)
    print(text)
    return out


def machine() -> str:
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def mean_std_table(frame: pd.DataFrame, rows: str, cols: str, value: str, fmt: str = "{:.3f}") -> pd.DataFrame:
    """A pivot of 'mean ± std' strings."""
    agg = frame.groupby([rows, cols])[value].agg(["mean", "std"]).reset_index()
    agg["cell"] = [f"{fmt.format(m)} ± {fmt.format(0.0 if pd.isna(s) else s)}" for m, s in zip(agg["mean"], agg["std"])]
    return agg.pivot(index=rows, columns=cols, values="cell")


def plain_opacus(splits, eps: float | None, seed: int, epochs: int = 30, delta: float = 1e-5, draw: int = 0) -> float:
    """The Opacus tutorial recipe on privtrain's split: MLP n-128-C (ReLU), SGD lr 1.0, batch 128,
    clip 1.0, PRV accountant, make_private_with_epsilon. ``eps=None`` trains the same MLP without DP
    (Adam lr 1e-2). Returns test accuracy.

    ``seed`` fixes the initialisation and, for ``draw=0``, the sampling and noise too (torch's global
    generator, as in the tutorial): the figure is then one fixed draw per seed. ``draw=k`` keeps the
    initialisation and draws the sampling and noise from seed ``seed + 1000 k``."""
    import torch

    model = plain_opacus_model(splits, eps, seed, epochs, delta, draw)
    with torch.no_grad():
        return float((model(torch.from_numpy(splits.x_test)).argmax(1).numpy() == splits.y_test).mean())


def plain_opacus_model(splits, eps: float | None, seed: int, epochs: int = 30, delta: float = 1e-5, draw: int = 0):
    """The model :func:`plain_opacus` trains on ``splits.x_train`` (its Opacus wrapper, in eval mode)."""
    import warnings

    import torch
    from opacus import PrivacyEngine
    from torch import nn

    torch.manual_seed(seed)
    n_in, n_out = splits.x_train.shape[1], len(splits.classes)
    model = nn.Sequential(nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, n_out))
    if draw:
        torch.manual_seed(seed + 1000 * draw)
    opt = torch.optim.SGD(model.parameters(), lr=1.0) if eps else torch.optim.Adam(model.parameters(), lr=1e-2)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train))
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' secure-RNG and backward-hook notices
        if eps:
            model, opt, loader = PrivacyEngine(accountant="prv").make_private_with_epsilon(
                module=model,
                optimizer=opt,
                data_loader=loader,
                target_epsilon=eps,
                target_delta=delta,
                epochs=epochs,
                max_grad_norm=1.0,
            )
        for _ in range(epochs):
            for xb, yb in loader:
                if len(xb):
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(xb), yb).backward()
                    opt.step()
    return model.eval()


def seconds_per_step(fn, steps: int, device: str) -> float:
    """Mean wall seconds of ``steps`` calls of ``fn``, with CUDA synchronised on both sides (timing benchmarks)."""
    import time

    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps
