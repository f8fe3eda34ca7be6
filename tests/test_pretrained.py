"""model=pretrained and dataset=text: local weights only, the right parameters trained, a DP LoRA run that learns.

The models are tiny BERTs initialised at random on this machine (privtrain.pretrained.tiny): no network.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import privtrain
from privtrain import data, ledger, models, training
from privtrain.errors import UserError
from privtrain.pretrained import spec as pretrained_spec
from privtrain.pretrained.tiny import build_tiny_bert, sentiment_rows
from privtrain.privacy import dp_sgd as dp_plan


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "bert-tiny")


def _reviews(folder, n, seed=1):
    texts, labels = sentiment_rows(n, seed=seed)
    path = folder / "reviews.csv"
    pd.DataFrame({"review": texts, "label": labels}).to_csv(path, index=False)
    return path


def _text_run(bert, csv, *extra):
    return [
        "model=pretrained",
        f"model.path={bert}",
        "dataset=text",
        f"dataset.path={csv}",
        "dataset.text_column=review",
        "dataset.target=label",
        "dataset.source=reviews",
        "+dataset.schema.label={categories: [0, 1]}",
        "dataset.max_length=12",
        "recipe.progress=false",
        *extra,
    ]


def _model(bert, **node) -> torch.nn.Module:
    spec = models.ModelSpec(
        name="pretrained",
        hidden=(),
        channels=(),
        pretrained=pretrained_spec.from_mapping({"path": str(bert), **node}).to_dict(),
    )
    return models.build(spec, n_inputs=0, n_classes=2, image_shape=None)


def _tokens(bert, texts, length=12) -> np.ndarray:
    from privtrain.data.text import load_tokenizer

    enc = load_tokenizer(str(bert))(
        texts, padding="max_length", truncation=True, max_length=length, return_tensors="np"
    )
    return np.stack([enc["input_ids"], enc["attention_mask"]], axis=1).astype(np.int64)


def test_dp_lora_learns_the_words_and_the_card_names_the_weights(bert, tmp_path, ledger_path):
    csv = _reviews(tmp_path, 3000)
    result = privtrain.run(
        "dp_sgd",
        _text_run(
            bert,
            csv,
            "model.finetune=lora",
            "dataset.public_n=3000",
            "privacy.target_epsilon=8",
            "recipe.batch_size=256",
            "recipe.max_physical_batch_size=256",
            "recipe.steps=300",
            "recipe.optimizer=sgd",
            "recipe.lr=2.0",
            "recipe.momentum=0.9",
        ),
        output_dir=tmp_path / "run",
    )
    m = result.metrics
    assert result.guarantee.epsilon <= 8 + 1e-6 and result.guarantee.unit == "example"
    # a balanced 2-class task; 0.84-0.92 in 3 runs (the noise is fresh each run: the margin absorbs it)
    assert m["majority_baseline"] < 0.6 and m["balanced_accuracy"] >= 0.75, m
    weights = hashlib.sha256((bert / "model.safetensors").read_bytes()).hexdigest()
    card = (result.output_dir / "model_card.md").read_text()
    assert weights in card and "covers only the fine-tuning data" in card and "LoRA adapters" in card
    run = json.loads((result.output_dir / "run.json").read_text())
    loaded = run["model"]["loaded"]
    assert loaded["weights"]["sha256"] == weights and loaded["config_class"] == "BertConfig"
    assert loaded["name"] == "bert-tiny" and loaded["finetune"] == "lora"
    assert 0 < loaded["trainable_parameters"] < loaded["total_parameters"] / 5
    assert run["dp"]["grad_sample_mode"] == "ghost"  # LoRA's linear layers and the head all have ghost norms
    (entry,) = [e for e in ledger.open(ledger_path).entries() if e.status == "committed"]
    assert entry.source_name == "reviews"  # the table is charged to its source like any file


@pytest.mark.parametrize("mode,grad_sample_mode", [("all", "ghost"), ("last_k", "hooks"), ("lora", "hooks")])
def test_modes_train_only_their_parameters_and_frozen_weights_stay_bit_identical(bert, mode, grad_sample_mode):
    model = _model(bert, finetune=mode, last_k=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    names = {n for n, _ in model.named_parameters()}
    if mode == "all":
        assert trainable == names
    elif mode == "last_k":  # the last block, the pooler and the head; never the embeddings or block 0
        assert trainable == {
            n for n in names if n.startswith(("model.bert.encoder.layer.1.", "model.bert.pooler.", "model.classifier."))
        }
    else:  # the adapters and peft's trainable copy of the head
        assert trainable and all(".lora_" in n or ".modules_to_save." in n for n in trainable)
        assert any(".lora_B." in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    texts, labels = sentiment_rows(200, seed=3)
    plan = dp_plan.plan(
        n_train=200,
        batch_size=50,
        epochs=1,
        target_epsilon=None,
        noise_multiplier=1.0,
        delta=1e-4,
        max_grad_norm=1.0,
        accountant="rdp",
    )
    settings = training.TrainSettings(
        epochs=1,
        batch_size=50,
        max_physical_batch_size=50,
        optimizer="sgd",
        lr=0.5,
        ema=0.9,
        grad_sample_mode=grad_sample_mode,
        progress=False,
    )
    out = training.train(model, _tokens(bert, texts), np.array(labels), settings, dp=plan)
    after = dict(out.model.named_parameters())
    for name, value in before.items():
        same = torch.equal(value, after[name].detach())
        assert same == (name not in trainable), name  # frozen: bit-identical; trainable: moved (noise at least)


def test_per_example_gradients_of_a_transformer_are_exact(bert):
    """Opacus' per-example gradients (the basis of the clipping, and so of the guarantee) equal each example's own
    gradient: position and token-type ids have the batch's size, so every embedding row is attributed right."""
    from opacus.grad_sample import GradSampleModule

    model = _model(bert, finetune="all").train()  # Opacus records activations in train mode only; no dropout:
    for module in model.modules():  # the same function for the batch and for each example alone
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    x = torch.from_numpy(_tokens(bert, ["good room", "the staff was cruel and cold", "a day"]))
    y = torch.tensor([1, 0, 1])
    alone = []
    for i in range(3):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1], reduction="sum").backward()
        alone.append({n: p.grad.clone() for n, p in model.named_parameters()})
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    model.zero_grad()
    torch.nn.functional.cross_entropy(wrapped(x), y, reduction="sum").backward()
    for name, p in model.named_parameters():
        for i in range(3):
            torch.testing.assert_close(p.grad_sample[i], alone[i][name], atol=1e-5, rtol=1e-4, msg=name)


def test_an_empty_poisson_batch_gives_no_rows(bert):
    model = _model(bert, finetune="lora")
    assert model(torch.zeros((0, 2, 12), dtype=torch.int64)).shape == (0, 2)


def test_state_dict_into_a_privtrain_network_last_k_and_a_new_head(tmp_path):
    torch.manual_seed(0)
    source = models.build(models.ModelSpec(name="mlp", hidden=(16, 8)), n_inputs=4, n_classes=3, image_shape=None)
    torch.save(source.state_dict(), tmp_path / "mlp.pt")
    node = {
        "path": str(tmp_path / "mlp.pt"),
        "finetune": "last_k",
        "last_k": 1,
        "arch": {"name": "mlp", "hidden": [16, 8]},
    }
    spec = models.ModelSpec(
        name="pretrained", hidden=(), channels=(), pretrained=pretrained_spec.from_mapping(node).to_dict()
    )
    model = models.build(spec, n_inputs=4, n_classes=2, image_shape=None)  # 2 classes: the 3-class head is replaced
    assert torch.equal(model[0].weight, source[0].weight) and torch.equal(model[2].weight, source[2].weight)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"4.weight", "4.bias"}
    assert "initialised afresh" in models.describe(model, spec)
    for arch, message in (
        ({"name": "mlp", "hidden": [32]}, "does not fit model.arch"),
        ({"name": "mlp", "hiden": [16, 8]}, "model.arch.hiden does not apply"),
    ):
        bad = models.ModelSpec(
            name="pretrained", pretrained=pretrained_spec.from_mapping({**node, "arch": arch}).to_dict()
        )
        with pytest.raises(UserError, match=message):
            models.build(bad, n_inputs=4, n_classes=2, image_shape=None)


def test_the_tokenizer_is_the_models_and_never_learns_the_private_words(bert, tmp_path, ledger_path):
    before = hashlib.sha256((bert / "tokenizer.json").read_bytes()).hexdigest()
    csv = tmp_path / "t.csv"
    pd.DataFrame({"review": ["zyzzyva good"] * 30 + ["qwertz bad"] * 30, "label": [1] * 30 + [0] * 30}).to_csv(csv)
    spec = data.DatasetSpec(
        loader="text",
        path=str(csv),
        target="label",
        source="reviews",
        schema={"label": {"categories": [0, 1]}},
        text={"column": "review", "max_length": 6, "tokenizer": str(bert)},
    )
    dataset = data.load(spec)
    x = dataset.schema.transform(dataset.frame)
    unk = dataset.schema.tokenizer.convert_tokens_to_ids("[UNK]")
    assert x.shape == (60, 2, 6) and x.dtype == np.int64 and (x[:, 0] == unk).sum(axis=1).min() == 1
    assert hashlib.sha256((bert / "tokenizer.json").read_bytes()).hexdigest() == before
    shuffled = tmp_path / "s.csv"  # another file name and row order: the same table to the ledger
    pd.read_csv(csv).sample(frac=1, random_state=0).to_csv(shuffled, index=False)
    other = data.load(data.DatasetSpec(**{**spec.to_dict(), "path": str(shuffled), "source": None}))
    assert other.fingerprint == data.load(data.DatasetSpec(**{**spec.to_dict(), "source": None})).fingerprint


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.path=/nowhere/bert", "model.path\\): no directory '/nowhere/bert'"),
        ("model.finetune=some", "model.finetune='some' is unknown"),
        ("model.last_k=9", "model.last_k=9: the model has 2 layers"),
        (
            "model.finetune=lora model.lora.target_modules=[nothing_here]",
            "model.lora.target_modules: peft cannot place",
        ),
        ("model.lora.r=0", "model.lora.r=0 must be a whole number >= 1"),
        ("model.last_kk=1", "model.last_kk is"),  # a typo: refused by name
    ],
)
def test_bad_settings_are_one_line_and_charge_nothing(bert, tmp_path, ledger_path, override, message):
    csv = _reviews(tmp_path, 50)
    args = _text_run(
        bert,
        csv,
        "dataset.public_n=50",
        "recipe.batch_size=16",
        "recipe.max_physical_batch_size=16",
        "model.finetune=last_k",
        *override.split(),
    )
    with pytest.raises(UserError, match=message) as err:
        privtrain.run("dp_sgd", args, output_dir=tmp_path / "r")
    assert "\n" not in str(err.value)
    assert not ledger_path.exists() or not list(ledger.open(ledger_path).entries())


def test_a_directory_without_config_and_a_file_of_another_kind_are_refused(tmp_path):
    (tmp_path / "weights.txt").write_text("x")
    for path, message in ((tmp_path, "without config.json"), (tmp_path / "weights.txt", "neither a Hugging Face")):
        with pytest.raises(UserError, match=message):
            _model(path)


def test_missing_llm_extra_is_one_line(bert, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ImportError, as when it is not installed
    with pytest.raises(UserError, match=r"pip install 'privtrain\[llm\]'"):
        _model(bert, finetune="lora")


@pytest.mark.slow
def test_cli_missing_path_exits_2_with_one_line_and_a_run_writes_its_card(bert, tmp_path):
    import os

    env = {**os.environ, "PRIVTRAIN_LEDGER": str(tmp_path / "ledger.db")}
    csv = _reviews(tmp_path, 300)
    base = [sys.executable, "-m", "privtrain.cli", "run", "dp_sgd", *_text_run(bert, csv, "dataset.public_n=300")]
    bad = subprocess.run(
        [*base, "model.path=/nowhere/bert"], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "model.path" in bad.stderr
    assert not (tmp_path / "ledger.db").exists() or not list(ledger.open(tmp_path / "ledger.db").entries())
    good = subprocess.run(
        [
            *base,
            "privacy.target_epsilon=3",
            "recipe.steps=20",
            "recipe.batch_size=64",
            "recipe.max_physical_batch_size=32",
            "model.finetune=last_k",
            f"hydra.run.dir={tmp_path}/out",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert good.returncode == 0, good.stderr[-2000:]
    card = (tmp_path / "out" / "model_card.md").read_text()
    assert hashlib.sha256((bert / "model.safetensors").read_bytes()).hexdigest() in card


def test_run_json_model_reads_back_and_a_text_run_is_refused_by_predict_in_one_line(bert, tmp_path, ledger_path):
    csv = _reviews(tmp_path, 200)
    result = privtrain.run(
        "dp_sgd",
        _text_run(
            bert,
            csv,
            "dataset.public_n=200",
            "privacy.target_epsilon=3",
            "recipe.steps=4",
            "recipe.batch_size=32",
            "recipe.max_physical_batch_size=16",
            "model.finetune=last_k",
            "model.last_k=0",
        ),
        output_dir=tmp_path / "r",
    )
    run = json.loads((result.output_dir / "run.json").read_text())
    spec = models.ModelSpec.from_dict(run["model"])  # the loaded-weights record does not break the spec
    assert spec.pretrained["finetune"] == "last_k" and run["model"]["loaded"]["last_k"] == 0
    with pytest.raises(UserError, match="do not read dataset=text runs yet"):
        privtrain.load(result.output_dir)


@pytest.mark.parametrize("recipe", ["federated", "synthetic"])
def test_other_recipes_refuse_text_and_pretrained_in_one_line(recipe, bert, tmp_path):
    from privtrain import config

    csv = _reviews(tmp_path, 20)
    overrides = ["dataset=text", f"dataset.path={csv}", "dataset.target=label"] + (
        ["model=pretrained", f"model.path={bert}"] if recipe == "federated" else []
    )
    with pytest.raises(UserError, match="run with privtrain run dp_sgd") as err:
        config.settings(recipe, config.compose(recipe, overrides))
    assert "\n" not in str(err.value)
