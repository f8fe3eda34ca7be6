"""A resume needs only ``resume=``: the dataset and model come from the checkpoint's run, and every check stays."""

from __future__ import annotations

import json

import pytest
from conftest import TINY

import privtrain
from privtrain import config, ledger
from privtrain.config.compose import to_yaml
from privtrain.errors import UserError


def _fake_run(tmp_path, *overrides: str):
    """A folder with the config.yaml a run on ``overrides`` writes, and a checkpoint.pt beside it."""
    run = tmp_path / "earlier"
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(config.compose("dp_sgd", list(overrides))))
    (run / "checkpoint.pt").write_bytes(b"")
    return run / "checkpoint.pt"


def test_the_checkpoints_dataset_and_model_are_the_defaults_and_the_users_choices_win(tmp_path):
    ckpt = _fake_run(
        tmp_path,
        "dataset=csv",
        "dataset.path=/data/x.csv",
        "dataset.target=y",
        "dataset.public_n=900",
        "model=mlp",
        "model.hidden=[16]",
    )
    plain = config.compose("dp_sgd", [f"resume={ckpt}"])
    assert (plain.dataset.loader, plain.dataset.path, plain.dataset.public_n) == ("csv", "/data/x.csv", 900)
    assert (plain.model.name, list(plain.model.hidden)) == ("mlp", [16])
    s = config.settings("dp_sgd", plain)  # typed settings read it like any composed config
    assert s.dataset.path == "/data/x.csv" and "loader: csv" in s.config_yaml

    moved = config.compose("dp_sgd", [f"resume={ckpt}", "dataset.path=/elsewhere/x.csv", "model.hidden=[8]"])
    assert (moved.dataset.loader, moved.dataset.path, moved.dataset.target) == ("csv", "/elsewhere/x.csv", "y")
    assert list(moved.model.hidden) == [8]  # a key override applies on top of the checkpoint's run

    chosen = config.compose("dp_sgd", [f"resume={ckpt}", "dataset=wine", "model=logreg"])
    assert (chosen.dataset.loader, chosen.model.name) == ("wine", "logreg")  # a group choice is the user's

    (ckpt.parent / "config.yaml").unlink()  # no run beside it: the recipe's defaults (the recipe refuses later)
    assert config.compose("dp_sgd", [f"resume={ckpt}"]).dataset.loader == "digits"
    assert config.compose("dp_sgd", []).dataset.loader == "digits"


@pytest.mark.slow
def test_resume_without_the_original_overrides_and_every_check_still_refuses(tmp_path, ledger_path, cli):
    first = privtrain.run("dp_sgd", [*TINY, "dataset=breast_cancer"], output_dir=tmp_path / "a")
    ckpt = first.output_dir / "checkpoint.pt"
    second = privtrain.run("dp_sgd", [*TINY, f"resume={ckpt}"], output_dir=tmp_path / "b")
    assert json.loads((second.output_dir / "run.json").read_text())["dataset"]["loader"] == "breast_cancer"
    assert len(second.guarantee.events) == 2 and second.guarantee.epsilon > first.guarantee.epsilon
    book = ledger.open(ledger_path)
    assert book.spent("digits", "example") == 0 and book.spent("breast_cancer", "example") > 0
    entries = len(book.entries())

    # the CLI takes the same path (Hydra's own launcher)
    out = cli("run", "dp_sgd", *TINY, f"resume={ckpt}", f"hydra.run.dir={tmp_path / 'c'}")
    assert out.returncode == 0, out.stderr
    assert "breast_cancer" in (tmp_path / "c" / "config.yaml").read_text()
    entries = len(ledger.open(ledger_path).entries())

    # an explicit choice that contradicts the checkpoint: one line, nothing charged
    with pytest.raises(UserError, match="trained on a different dataset") as err:
        privtrain.run("dp_sgd", [*TINY, "dataset=wine", f"resume={ckpt}"], output_dir=tmp_path / "d")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="holds a different model"):
        privtrain.run("dp_sgd", [*TINY, "model=mlp", f"resume={ckpt}"], output_dir=tmp_path / "e")

    # the attacker rewrites the config.yaml beside the checkpoint to point the resume at another table:
    # the table actually read must still have the checkpoint's fingerprint
    text = (first.output_dir / "config.yaml").read_text()
    (first.output_dir / "config.yaml").write_text(text.replace("loader: breast_cancer", "loader: wine"))
    with pytest.raises(UserError, match="trained on a different dataset"):
        privtrain.run("dp_sgd", [*TINY, f"resume={ckpt}"], output_dir=tmp_path / "f")
    assert len(ledger.open(ledger_path).entries()) == entries
