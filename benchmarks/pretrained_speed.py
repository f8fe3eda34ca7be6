"""DP fine-tuning of the tiny pretrained transformer: LoRA against all layers, side by side.

    python benchmarks/pretrained_speed.py                  # CPU, 1 thread: ~6 min on 2 shared cores
    python benchmarks/pretrained_speed.py --device cuda    # speed only on a GPU: add --no-accuracy

Speed: for ``model.finetune=lora`` and ``all``, a non-private step and a DP step (``recipe.grad_sample_mode``
auto, which picks ghost clipping for both, and hooks) on the same fixed batch in interleaved rounds in one
process, through privtrain's own Opacus parts (:func:`clipping_speed.dp_stepper`); ratio = median DP step /
median non-private step. Accuracy: one DP run per mode and ε through :func:`privtrain.training.train` on the
synthetic text task (:func:`privtrain.pretrained.tiny.sentiment_rows`, 3,000 rows, 2,400 to train), SGD with
momentum 0.9, batch 256, 300 steps; the learning rate is each mode's (lora 2.0, all 1.0), set on one trial
of this synthetic task. The model is random (a tiny BERT, hidden 32, 2 layers): the figures measure the DP
machinery, not what a real pretrained model would reach.
Writes benchmarks/out/pretrained_speed/pretrained_speed_{device}.{csv,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # privtrain from this checkout

LR = {"lora": 2.0, "all": 1.0}


def tokens(folder: Path, texts: list[str], length: int = 12) -> np.ndarray:
    from privtrain.data.text import load_tokenizer

    enc = load_tokenizer(str(folder))(
        texts, padding="max_length", truncation=True, max_length=length, return_tensors="np"
    )
    return np.stack([enc["input_ids"], enc["attention_mask"]], axis=1).astype(np.int64)


def factory(folder: Path, mode: str):
    from privtrain import models
    from privtrain.pretrained import spec

    node = spec.from_mapping({"path": str(folder), "finetune": mode}).to_dict()
    return lambda: models.build(
        models.ModelSpec(name="pretrained", pretrained=node), n_inputs=0, n_classes=2, image_shape=None
    ).train()  # from_pretrained returns eval mode


def speed(folder: Path, mode: str, device: str, rounds: int, steps: int, batch: int) -> list[dict]:
    from clipping_speed import dp_stepper, plain_stepper

    from privtrain.pretrained.build import info
    from privtrain.pretrained.tiny import sentiment_rows
    from privtrain.privacy.clipping_mode import choose

    texts, labels = sentiment_rows(batch, seed=0)
    x, y = torch.from_numpy(tokens(folder, texts)).to(device), torch.tensor(labels).to(device)
    make = factory(folder, mode)
    picked = choose("auto", make(), clipping="flat", amp=False).mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fns = {
            "non-private": plain_stepper(make, x, y),
            f"auto ({picked})": dp_stepper(make, x, y, picked),
            "hooks": dp_stepper(make, x, y, "hooks"),
        }
        for fn in fns.values():
            fn()
        from common import seconds_per_step

        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):
            for k, fn in fns.items():
                times[k].append(seconds_per_step(fn, steps, device))
    record = info(make())
    plain = float(np.median(times["non-private"]))
    return [
        {
            "finetune": mode,
            "trainable": record["trainable_parameters"],
            "total": record["total_parameters"],
            "batch": batch,
            "device": device,
            "dp_mode": k,
            "plain_ms": 1e3 * plain,
            "dp_ms": 1e3 * float(np.median(v)),
            "ratio": float(np.median(v)) / plain,
        }
        for k, v in times.items()
        if k != "non-private"
    ]


def accuracy(folder: Path, mode: str, epsilon: float) -> dict:
    from privtrain import training
    from privtrain.pretrained.tiny import sentiment_rows
    from privtrain.privacy import dp_sgd as dp_plan

    texts, labels = sentiment_rows(3000, seed=1)
    x, y = tokens(folder, texts), np.array(labels)
    plan = dp_plan.plan(
        n_train=2400,
        batch_size=256,
        epochs=30,
        target_epsilon=epsilon,
        noise_multiplier=None,
        delta=None,
        max_grad_norm=1.0,
        accountant="prv",
    )
    settings = training.TrainSettings(
        epochs=30,
        batch_size=256,
        max_physical_batch_size=256,
        optimizer="sgd",
        lr=LR[mode],
        momentum=0.9,
        ema=0.95,
        grad_sample_mode="ghost",
        progress=False,
    )
    torch.manual_seed(0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = training.train(factory(folder, mode)(), x[:2400], y[:2400], settings, dp=plan)
    seconds = time.perf_counter() - start
    scores = training.evaluate(out.model, x[2400:], y[2400:], 2)
    return {
        "finetune": mode,
        "epsilon": epsilon,
        "steps": out.steps,
        "noise_multiplier": plan.noise_multiplier,
        "accuracy": scores["accuracy"],
        "balanced_accuracy": scores["balanced_accuracy"],
        "ms_per_step": 1e3 * seconds / max(1, out.steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--out", help="output folder (default benchmarks/out/pretrained_speed)")
    args = parser.parse_args()
    import pandas as pd
    from common import machine, out_dir

    from privtrain.pretrained.tiny import build_tiny_bert

    torch.set_num_threads(1)
    folder = build_tiny_bert(Path(tempfile.mkdtemp()) / "bert-tiny")
    rows = [
        r for mode in ("lora", "all") for r in speed(folder, mode, args.device, args.rounds, args.steps, args.batch)
    ]
    for r in rows:
        print(r, flush=True)
    speed_table = pd.DataFrame(rows)
    text = (
        f"# DP fine-tuning of the tiny transformer ({args.device}, 1 thread)\n\nMachine: {machine()}\n\n"
        f"Command: `python benchmarks/pretrained_speed.py {' '.join(sys.argv[1:])}`\n\n"
        "## Speed\n\nratio = median DP step / median non-private step, interleaved rounds on the same batch.\n\n"
        + speed_table.to_markdown(index=False, floatfmt=".2f")
        + "\n"
    )
    if not args.no_accuracy and args.device == "cpu":
        acc = [accuracy(folder, mode, eps) for mode in ("lora", "all") for eps in (3.0, 8.0)]
        for r in acc:
            print(r, flush=True)
        text += (
            "\n## Accuracy (one run each, held-out 600 rows, balanced classes)\n\n"
            + pd.DataFrame(acc).to_markdown(index=False, floatfmt=".3f")
            + "\n"
        )
    out = Path(args.out) if args.out else out_dir("pretrained_speed")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"pretrained_speed_{args.device.replace(':', '')}"
    speed_table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.{{csv,md}}")


if __name__ == "__main__":
    main()
