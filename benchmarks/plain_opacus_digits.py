"""The job `privtrain run dp_sgd` does by default, written as a plain Opacus script: the baseline of
``end_to_end.py``. Same data (digits, features / 16, 80/20 split), model (logistic regression),
optimizer (Adam, lr 0.05), logical batch 128 with Poisson sampling, 30 epochs (360 steps), clip 1.0,
ε = 3 at δ = 1e-5 calibrated with the PRV accountant; it evaluates and saves the weights.

    python plain_opacus_digits.py OUT_DIR
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from opacus import PrivacyEngine
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def main(out: Path) -> None:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)), batch_size=128
    )
    model = torch.nn.Linear(64, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    engine = PrivacyEngine(accountant="prv")
    model, optimizer, loader = engine.make_private_with_epsilon(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        target_epsilon=3.0,
        target_delta=1e-5,
        epochs=30,
        max_grad_norm=1.0,
        poisson_sampling=True,
    )
    criterion = torch.nn.CrossEntropyLoss()
    steps = 0
    for _ in range(30):
        for xb, yb in loader:
            if len(xb):
                optimizer.zero_grad()
                criterion(model(xb), yb).backward()
                optimizer.step()
                steps += 1
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model._module.state_dict(), out / "model.pt")
    print(f"steps={steps} accuracy={accuracy:.3f} epsilon={engine.get_epsilon(1e-5):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
