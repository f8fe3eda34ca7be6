"""Encrypted artifacts: what a key seals, who can open it, and what an attacker with the disk but not the key
cannot do (read a checkpoint, edit a file unnoticed, swap one sealed file for another)."""

from __future__ import annotations

import io
import json
import os
import pickle
import stat

import pytest
import torch

import privtrain
from privtrain import ledger
from privtrain.artifacts import sealed
from privtrain.cli import main
from privtrain.crypto import aead, files, keys
from privtrain.errors import UserError
from tests.conftest import TINY

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def _key_file(tmp_path, name="k.json", key_id="k1"):
    path = tmp_path / name
    keys.new_file(path, key_id)
    return path


def _one_line(capsys, code: int, expected: int, *words: str) -> str:
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == expected, text
    assert text.count("\n") == 1 and "Traceback" not in text, text
    for w in words:
        assert w in text, text
    return text


def _encrypted_run(tmp_path, key_file, name="run", extra=()):
    return privtrain.run(
        "dp_sgd", [*TINY, f"artifacts.key_file={key_file}", *extra], output_dir=tmp_path / name
    ).output_dir


# --- the format --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, aead.CHUNK, 2 * aead.CHUNK + 17])
def test_round_trip_of_every_size_and_each_sealing_differs(size):
    ring = keys.Keyring({"k1": os.urandom(32)}, "k1", "test")
    data = os.urandom(size)
    blob = files.seal_for(data, ring, "run r/checkpoint.pt")
    assert blob != files.seal_for(data, ring, "run r/checkpoint.pt")  # fresh nonces every time
    assert data not in blob or size == 0
    plain, context = files.open_sealed(blob, "f", expect="run r/checkpoint.pt", keyring=ring)
    assert plain == data and context == "run r/checkpoint.pt"


def test_a_flipped_byte_anywhere_a_dropped_chunk_or_another_key_is_refused():
    ring = keys.Keyring({"k1": os.urandom(32)}, "k1", "test")
    data = os.urandom(aead.CHUNK + 100)
    blob = files.seal_for(data, ring, "run r/checkpoint.pt")
    header = aead.read_header(blob, "f")
    for at in (len(header.raw) - 1, len(header.raw) + 5, len(blob) - 1, 20):  # nonce prefix, body, tag, context
        bad = bytearray(blob)
        bad[at] ^= 0x01
        with pytest.raises(UserError, match="fails authentication|swapped"):
            files.open_sealed(bytes(bad), "f", expect="run r/checkpoint.pt", keyring=ring)
    first_chunk_only = blob[: len(header.raw) + aead.CHUNK + 16]  # truncated at a chunk boundary
    with pytest.raises(UserError, match="fails authentication"):
        files.open_sealed(first_chunk_only, "f", expect=None, keyring=ring)
    impostor = keys.Keyring({"k1": os.urandom(32)}, "k1", "other.json")  # same id, another key
    with pytest.raises(UserError, match="fails authentication under key id 'k1'"):
        files.open_sealed(blob, "f", expect=None, keyring=impostor)
    stranger = keys.Keyring({"k9": os.urandom(32)}, "k9", "other.json")
    with pytest.raises(UserError, match="encrypted under key id 'k1', which the configured key"):
        files.open_sealed(blob, "f", expect=None, keyring=stranger)


def test_a_sealed_file_swapped_for_another_is_refused_although_it_authenticates(tmp_path):
    ring = keys.Keyring({"k1": os.urandom(32)}, "k1", "test")
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    for folder, run_id in ((run_a, "dp_sgd-aaa"), (run_b, "dp_sgd-bbb")):
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps({"run_id": run_id}))
        with files.using(ring):
            files.bind(run_id)
            sealed.save_torch({"model": {"w": torch.ones(2)}, "run": run_id}, folder / "checkpoint.pt")
            files.write_run_file(folder / "synthetic.csv", b"a,b\n1,2\n")
    assert sealed.load_torch(run_a / "checkpoint.pt", keyring=ring)["run"] == "dp_sgd-aaa"
    (run_a / "checkpoint.pt").write_bytes((run_b / "checkpoint.pt").read_bytes())  # another run's checkpoint
    with pytest.raises(
        UserError, match="was encrypted as 'run dp_sgd-bbb/checkpoint.pt', not as 'run dp_sgd-aaa/checkpoint.pt'"
    ):
        sealed.load_torch(run_a / "checkpoint.pt", keyring=ring)
    (run_b / "checkpoint.pt").write_bytes((run_b / "synthetic.csv").read_bytes())  # the rows in the model's place
    with pytest.raises(UserError, match="swapped in"):
        sealed.load_torch(run_b / "checkpoint.pt", keyring=ring)


# --- keys ----------------------------------------------------------------------------------------------


def test_key_files_are_0600_never_overwritten_and_refused_when_others_can_read_them(tmp_path, capsys):
    path = tmp_path / "k.json"
    assert main(["keys", "new", str(path), "--id", "2026-q1"]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.from_file(path).current == "2026-q1"
    capsys.readouterr()
    _one_line(capsys, main(["keys", "new", str(path)]), 2, "exists", "never overwritten")
    assert main(["keys", "new", str(path), "--add", "--id", "2026-q2"]) == 0
    ring = keys.from_file(path)
    assert ring.current == "2026-q2" and set(ring.keys) == {"2026-q1", "2026-q2"}
    path.chmod(0o644)
    with pytest.raises(UserError, match=r"mode 0644, readable by others .* chmod 600"):
        keys.from_file(path)
    bad = tmp_path / "bad.json"
    files.write_private(bad, b'{"id": "x", "key": "too short"}')
    with pytest.raises(UserError, match="is not a 32-byte key"):
        keys.from_file(bad)


def test_environment_keys_hex_or_base64_with_an_id_and_ambiguity_refused(tmp_path, monkeypatch):
    secret = os.urandom(32)
    monkeypatch.setenv(keys.ENV_KEY, secret.hex())
    monkeypatch.setenv(keys.ENV_KEY_ID, "ops-1")
    ring = keys.resolve(None)
    assert ring.current == "ops-1" and ring.current_key == secret
    import base64

    monkeypatch.setenv(keys.ENV_KEY, base64.b64encode(secret).decode())
    assert keys.resolve(None).current_key == secret
    monkeypatch.setenv(keys.ENV_KEY_FILE, str(_key_file(tmp_path)))
    with pytest.raises(UserError, match="both PRIVTRAIN_ARTIFACT_KEY_FILE and PRIVTRAIN_ARTIFACT_KEY are set"):
        keys.resolve(None)
    monkeypatch.delenv(keys.ENV_KEY_FILE)
    monkeypatch.setenv(keys.ENV_KEY, "not a key")
    with pytest.raises(UserError, match="PRIVTRAIN_ARTIFACT_KEY is not a 32-byte key"):
        keys.resolve(None)


def test_a_key_that_cannot_be_used_stops_a_run_before_anything_is_read_or_charged(tmp_path, ledger_path):
    loose = _key_file(tmp_path)
    loose.chmod(0o640)
    for key_file, words in ((tmp_path / "missing.json", "does not exist"), (loose, "must be 0600")):
        with pytest.raises(UserError, match=words) as refused:
            privtrain.run("dp_sgd", [*TINY, f"artifacts.key_file={key_file}"], output_dir=tmp_path / "run")
        assert "\n" not in str(refused.value)
        assert not (tmp_path / "run").exists()
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []


# --- a run with a key ------------------------------------------------------------------------------------


def test_a_run_with_a_key_writes_no_plaintext_checkpoint_and_load_predict_need_the_key(
    tmp_path, ledger_path, capsys, monkeypatch
):
    key_file = _key_file(tmp_path)
    run_dir = _encrypted_run(tmp_path, key_file)
    blob = (run_dir / "checkpoint.pt").read_bytes()
    assert not blob.startswith(ZIP_MAGIC) and blob.startswith(aead.MAGIC)
    with pytest.raises((pickle.UnpicklingError, RuntimeError)):  # the attacker with the disk: torch cannot read it
        torch.load(io.BytesIO(blob), weights_only=True)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["encryption"] == {"key_id": "k1", "algorithm": "AES-256-GCM"}
    card = (run_dir / "model_card.md").read_text()  # the card and metrics stay readable for a reviewer
    assert "per example" in card
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"]["accuracy"] > 0
    assert main(["verify", str(run_dir)]) == 0  # the ledger chained the ciphertext as written

    with pytest.raises(UserError, match="is encrypted .* no key is configured"):
        privtrain.load(run_dir)
    model = privtrain.load(run_dir, key_file=str(key_file))
    from sklearn.datasets import load_digits

    rows = load_digits(as_frame=True).frame.head(30)
    assert len(model.predict(rows)) == 30

    rows_csv = tmp_path / "rows.csv"
    rows.to_csv(rows_csv, index=False)
    capsys.readouterr()
    _one_line(
        capsys, main(["predict", str(run_dir), str(rows_csv)]), 2, "checkpoint.pt is encrypted", "no key is configured"
    )
    out = tmp_path / "pred.csv"
    assert not out.exists()
    assert main(["predict", str(run_dir), str(rows_csv), "--output", str(out), "--key-file", str(key_file)]) == 0
    assert out.read_bytes().startswith(aead.MAGIC) and stat.S_IMODE(out.stat().st_mode) == 0o600
    opened = tmp_path / "pred.plain.csv"
    monkeypatch.setenv(keys.ENV_KEY_FILE, str(key_file))
    assert main(["keys", "open", str(out), "--output", str(opened)]) == 0
    assert opened.read_text().startswith("prediction,p_0")


def test_resume_opens_a_sealed_checkpoint_with_the_key_and_refuses_without_it(tmp_path, ledger_path):
    key_file = _key_file(tmp_path)
    run_dir = _encrypted_run(tmp_path, key_file)
    entries = len(ledger.open(ledger_path).entries())
    with pytest.raises(UserError, match="checkpoint.pt is encrypted .* no key is configured") as refused:
        privtrain.run("dp_sgd", [*TINY, f"resume={run_dir / 'checkpoint.pt'}"], output_dir=tmp_path / "r1")
    assert "\n" not in str(refused.value)
    assert len(ledger.open(ledger_path).entries()) == entries and not (tmp_path / "r1").exists()  # nothing charged
    resumed = _encrypted_run(tmp_path, key_file, "r2", [f"resume={run_dir / 'checkpoint.pt'}"])
    ckpt = sealed.load_torch(resumed / "checkpoint.pt", keyring=keys.from_file(key_file))
    assert (
        ckpt["meta"]["steps"]
        > sealed.load_torch(run_dir / "checkpoint.pt", keyring=keys.from_file(key_file))["meta"]["steps"]
    )


def test_audit_opens_the_sealed_checkpoint_with_the_environments_key(tmp_path, ledger_path, monkeypatch):
    from privtrain.audit import audit_run

    key_file = _key_file(tmp_path)
    run_dir = _encrypted_run(tmp_path, key_file)
    with pytest.raises(UserError, match="checkpoint.pt is encrypted"):
        audit_run(run_dir, shadow_models=0, update_card=False)
    monkeypatch.setenv(keys.ENV_KEY_FILE, str(key_file))
    report = audit_run(run_dir, shadow_models=0, update_card=False)
    assert set(report["attacks"]) == {"loss", "confidence"} and report["n_members"] > 0
    assert report["verdict"] == "consistent"  # the attacks scored the decrypted model against its claim
    assert main(["verify", str(run_dir)]) == 0  # the audit re-chained its own files next to the ciphertext


def test_rotation_re_encrypts_without_retraining_is_chained_and_the_old_key_no_longer_opens(
    tmp_path, ledger_path, capsys
):
    old_file, new_file = _key_file(tmp_path, "old.json", "k1"), _key_file(tmp_path, "new.json", "k2")
    run_dir = _encrypted_run(tmp_path, old_file)
    before = sealed.load_torch(run_dir / "checkpoint.pt", keyring=keys.from_file(old_file))
    entries = len(ledger.open(ledger_path).entries())

    capsys.readouterr()  # without the old key: refused, nothing written or recorded
    cipher = (run_dir / "checkpoint.pt").read_bytes()
    _one_line(
        capsys,
        main(["keys", "rotate", str(run_dir), "--new-key-file", str(new_file)]),
        2,
        "encrypted under key id 'k1'",
    )
    assert (run_dir / "checkpoint.pt").read_bytes() == cipher and len(ledger.open(ledger_path).entries()) == entries

    assert main(["keys", "rotate", str(run_dir), "--new-key-file", str(new_file), "--old-key-file", str(old_file)]) == 0
    after = sealed.load_torch(run_dir / "checkpoint.pt", keyring=keys.from_file(new_file))
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])  # the same weights
    with pytest.raises(UserError, match="encrypted under key id 'k2'"):
        sealed.load_torch(run_dir / "checkpoint.pt", keyring=keys.from_file(old_file))
    assert json.loads((run_dir / "run.json").read_text())["encryption"]["key_id"] == "k2"
    assert privtrain.load(run_dir, key_file=str(new_file)).run_id  # load checks the hash the rotation chained
    capsys.readouterr()
    assert main(["verify", str(run_dir)]) == 0
    book = ledger.open(ledger_path)
    entry = book.entries()[-1]
    assert len(book.entries()) == entries + 1 and entry.status == "artifacts"
    detail = entry.detail
    assert detail["key_rotation"] == {"old_key_ids": ["k1"], "new_key_id": "k2", "files": ["checkpoint.pt"]}
    assert set(detail["replaces"]) == {"checkpoint.pt", "run.json"}
    assert main(["ledger", "verify"]) == 0  # the chain itself still holds

    capsys.readouterr()  # a second rotation to the same key has nothing to do, and says so
    _one_line(capsys, main(["keys", "rotate", str(run_dir), "--new-key-file", str(new_file)]), 2, "nothing to rotate")
    assert len(ledger.open(ledger_path).entries()) == entries + 1

    data = bytearray((run_dir / "checkpoint.pt").read_bytes())  # an edit after the rotation is still caught
    data[-1] ^= 1
    (run_dir / "checkpoint.pt").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(run_dir)]) == 1


def test_synthetic_rows_are_sealed_and_train_only_with_the_key(tmp_path, ledger_path, monkeypatch):
    key_file = _key_file(tmp_path)
    syn = privtrain.run(
        "synthetic",
        [
            "synth=dp_gaussian_copula",
            "synth.epsilon=1",
            "synth.report=false",
            "synth.utility.enabled=false",
            f"artifacts.key_file={key_file}",
        ],
        output_dir=tmp_path / "syn",
    ).output_dir
    rows = syn / "synthetic.csv"
    assert rows.read_bytes().startswith(aead.MAGIC)
    assert json.loads((syn / "synthetic.schema.json").read_text())["target"]  # the public schema stays readable
    with pytest.raises(UserError, match="synthetic.csv is encrypted"):
        privtrain.run("dp_sgd", [*TINY, "dataset=synthetic", f"dataset.path={rows}"], output_dir=tmp_path / "t1")
    monkeypatch.setenv(keys.ENV_KEY_FILE, str(key_file))
    trained = privtrain.run("dp_sgd", [*TINY, "dataset=synthetic", f"dataset.path={rows}"], output_dir=tmp_path / "t2")
    assert trained.metrics["accuracy"] > 0


# --- policy: a class that requires encryption ------------------------------------------------------------


def test_a_class_requiring_encryption_refuses_a_run_without_a_key_before_any_row_is_read(
    tmp_path, ledger_path, monkeypatch
):
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrisk:\n  default: high\n  classes:\n    high:\n      controls: {encryption: true}\n")
    from privtrain import data

    real_load = data.load

    def no_rows(spec):
        raise AssertionError("rows were read before the policy refused the run")

    monkeypatch.setattr(data, "load", no_rows)
    with pytest.raises(UserError, match="encrypted artifacts") as refused:
        privtrain.run("dp_sgd", [*TINY, f"ledger.policy={policy}"], output_dir=tmp_path / "plain")
    assert "\n" not in str(refused.value) and not (tmp_path / "plain").exists()
    assert not [e for e in ledger.open(ledger_path).entries() if e.run_id and e.recipe == "dp_sgd"]
    monkeypatch.setattr(data, "load", real_load)
    run_dir = _encrypted_run(tmp_path, _key_file(tmp_path), "sealed", [f"ledger.policy={policy}"])
    assert (run_dir / "checkpoint.pt").read_bytes().startswith(aead.MAGIC)


# --- permissions ------------------------------------------------------------------------------------------


def test_run_files_are_0600_and_folders_0700_whatever_the_umask(tmp_path, ledger_path):
    old = os.umask(0o022)
    try:
        run_dir = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "outputs" / "plain" / "run").output_dir
        made = files.write_private(tmp_path / "fresh" / "x.json", b"{}")
    finally:
        os.umask(old)
    assert not (run_dir / "checkpoint.pt").read_bytes().startswith(aead.MAGIC)  # no key: plaintext, still private
    for path in [run_dir, *run_dir.rglob("*")]:
        want = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == want, path
    assert stat.S_IMODE((tmp_path / "outputs").stat().st_mode) == 0o700  # folders privtrain made for the run
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.parent.stat().st_mode) == 0o700
    fresh = tmp_path / "team" / "ledger.db"
    os.umask(0o022)
    try:
        ledger.open(str(fresh))
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700


@pytest.mark.slow
def test_federated_final_model_is_sealed_before_it_is_hashed(tmp_path, ledger_path):
    fl_tiny = [
        "fl.num_clients=3",
        "fl.fraction=1.0",
        "fl.rounds=1",
        "fl.local_epochs=1",
        "recipe.progress=false",
        "fl.simulation.num_cpus=1",
        "fl.simulation.cpus_per_client=0.5",
    ]
    key_file = _key_file(tmp_path)
    run_dir = privtrain.run(
        "federated", [*fl_tiny, f"artifacts.key_file={key_file}"], output_dir=tmp_path / "fed"
    ).output_dir
    final = run_dir / "final_model.pt"
    assert final.read_bytes().startswith(aead.MAGIC) and stat.S_IMODE(final.stat().st_mode) == 0o600
    weights = sealed.load_torch(final, keyring=keys.from_file(key_file))
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    assert json.loads((run_dir / "run.json").read_text())["encryption"]["key_id"] == "k1"
    assert main(["verify", str(run_dir)]) == 0  # the ledger chained the sealed file, not the plaintext
