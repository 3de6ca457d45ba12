"""train defect on a tiny model: a run split with --stop-at-step/--resume equals one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alpine_lsp.cli.main import main as cli_main
from alpine_lsp.model.tiny import create_tiny_model
from alpine_lsp.train import defect
from alpine_lsp.train.checkpoint import load_state, save_state
from alpine_lsp.train.errors import TrainError
from tests.test_eval_clone import synthetic_bcb
from tests.test_eval_defect import synthetic_devign, write_devign


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    return create_tiny_model(root / "base"), write_devign(root / "devign", synthetic_devign(48))


def run(base: Path, data: Path, out: Path, *extra: str) -> None:
    args = ["--data", str(data), "--base", str(base), "--out", str(out), "--batch-size", "4"]
    args += ["--epochs", "1", "--threads", "1", "--seed", "3", *extra]
    # Through the command line, which turns a TrainError into its message and exit status.
    assert cli_main(["train", "defect", *args]) == 0


def test_split_run_equals_one_run(setup, tmp_path):
    base, data = setup
    run(base, data, tmp_path / "one")
    run(base, data, tmp_path / "two", "--stop-at-step", "3")
    ck = tmp_path / "two.ckpt"
    assert load_state(ck, "optim")["opt"]["state"], "optimizer state was checkpointed"
    run(base, data, tmp_path / "two", "--resume")
    a = load_file(str(tmp_path / "one.ckpt" / "net.safetensors"))
    b = load_file(str(ck / "net.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    # The split run did train: weights moved away from the base.
    base_w = load_file(str(base / "model.safetensors"))
    k = next(k for k in base_w if k.startswith("defect_head") and k.endswith("weight"))
    assert not torch.allclose(base_w[k].float(), b[k].float())


def test_checkpoint_holds_no_pickle(setup, tmp_path):
    base, data = setup
    run(base, data, tmp_path / "m", "--stop-at-step", "2")
    names = sorted(p.name for p in (tmp_path / "m.ckpt").iterdir())
    assert names == [
        "net.safetensors",
        "optim.json",
        "optim.safetensors",
        "state.json",
        "tokenizer.json",
    ]


def test_state_round_trip(tmp_path):
    states = {
        "opt": {"state": {0: {"step": torch.tensor(3.0), "m": torch.ones(2, 2)}}, "lr": [0.1]},
        "betas": (0.9, 0.999),
        "name": "x",
    }
    save_state(states, tmp_path, "s")
    back = load_state(tmp_path, "s")
    assert list(back["opt"]["state"]) == [0]
    torch.testing.assert_close(back["opt"]["state"][0]["m"], torch.ones(2, 2))
    assert back["betas"] == [0.9, 0.999] and back["name"] == "x"


def test_scratch_base_learns_a_code_vocabulary(setup, tmp_path):
    from alpine_lsp.model import load_model

    _, data = setup
    small = ["--scratch-layers", "1", "--scratch-hidden", "32", "--vocab-size", "400"]
    out = tmp_path / "scratch"
    run(Path("scratch"), data, out, *small, "--stop-at-step", "2")
    run(Path("scratch"), data, out, *small, "--resume")
    m = load_model(out, device="cpu")
    assert m.info()["layers"] == 1 and m.info()["hidden"] == 32
    # Byte-level BPE: identifiers from the training code are whole tokens, and anything encodes.
    pieces = m.tokenizer.content(["strncpy(buf, src, len);", "é ☃ \x00"])
    assert "buf" in pieces[0][1] and len(pieces[0][0]) < len("strncpy(buf, src, len);") / 2
    assert pieces[1][0] and m.tokenizer.tok.token_to_id("<unk>") not in pieces[1][0]
    (p,) = m.defect_probability(["int f(void) { return 0; }"], "c")
    assert 0.0 <= p <= 1.0


def test_trained_models_ignore_layout(setup, tmp_path):
    """Devign doubles every newline; a model that saw layout learned that artefact and flagged
    all ordinary code. Trained models read whitespace collapsed, so layout cannot move a score."""
    from alpine_lsp.model import load_model

    _, data = setup
    small = ["--scratch-layers", "1", "--scratch-hidden", "32", "--vocab-size", "400"]
    out = tmp_path / "m"
    run(Path("scratch"), data, out, *small, "--stop-at-step", "2")
    m = load_model(out, device="cpu")
    assert m.meta.whitespace == "collapse"
    devign_style = "static int f(char *s)\n\n{\n\n    if (!s)\n\n        return -1;\n\n}\n"
    ordinary = "static int f(char *s)\n{\n\tif (!s)\n\t\treturn -1;\n}"
    ids = [m.tokenizer.batch([c], 64).input_ids.tolist() for c in (devign_style, ordinary)]
    assert ids[0] == ids[1]
    a, b = m.defect_probability([devign_style, ordinary], "c")
    assert a == pytest.approx(b, abs=1e-6)
    # The vocabulary was learned from collapsed text: no merged token holds a newline.
    assert not any("Ċ" in t and len(t) > 1 for t in m.tokenizer.tok.get_vocab())


def test_clone_pairs_and_contrastive_views_train_the_embedding(setup, tmp_path):
    base, data = setup
    bcb = tmp_path / "bcb"
    synthetic_bcb(bcb)
    out = tmp_path / "m"
    run(base, data, out, "--clone-data", str(bcb), "--clone-every", "1", "--contrastive", "4")
    before = load_file(str(base / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    k = next(k for k in before if k.startswith("embed_head") and k.endswith("weight"))
    assert not torch.allclose(before[k].float(), after[k].float())
    meta = json.loads((out / "alpine.json").read_text())
    assert 0.0 < meta["valid"]["clone_f1"] <= 1.0
    # The hint threshold clears both BigCloneBench's best-F1 point and 99.9% of random C pairs.
    v = meta["valid"]
    assert meta["similarity_threshold"] == round(
        max(v["clone_best_f1_threshold"], v["c_random_pairs_p999"]), 3
    )


def test_without_clone_training_the_model_offers_no_hints(setup, tmp_path):
    base, data = setup
    run(base, data, tmp_path / "m", "--stop-at-step", "1")
    meta = json.loads((tmp_path / "m" / "alpine.json").read_text())
    assert meta["similarity_threshold"] is None


def test_calibrate_only_keeps_weights_and_record(setup, tmp_path):
    base, data = setup
    run(base, data, tmp_path / "m", "--stop-at-step", "2", "--max-tokens", "64")
    before = json.loads((tmp_path / "m" / "alpine.json").read_text())
    # No --max-tokens here: how the model reads code comes from the model, not the defaults.
    run(tmp_path / "m", data, tmp_path / "r", "--calibrate-only", "--alpha", "0.5")
    after = json.loads((tmp_path / "r" / "alpine.json").read_text())

    a = load_file(str(tmp_path / "m" / "model.safetensors"))
    b = load_file(str(tmp_path / "r" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert after["pruning"]["alpha"] == 0.5 and before["pruning"]["alpha"] == 1.0
    assert after["max_tokens"] == 64 and after["name"] == before["name"]
    assert after["training"] == before["training"]
    assert [c["alpha"] for c in after["calibrations"]] == [0.5]
    assert "lr" not in after["calibrations"][0]  # only what calibration used
    assert after["valid"]["steps"] == before["valid"]["steps"] == 2
    assert not (tmp_path / "r.ckpt").exists()

    # A second recalibration appends to the record.
    run(tmp_path / "r", data, tmp_path / "r2", "--calibrate-only", "--alpha", "0.75")
    again = json.loads((tmp_path / "r2" / "alpine.json").read_text())
    assert [c["alpha"] for c in again["calibrations"]] == [0.5, 0.75]


def test_calibrate_only_refuses_what_it_cannot_recalibrate(setup, tmp_path, capsys):
    base, data = setup
    with pytest.raises(SystemExit, match="not one"):
        cli_main(
            [
                "train",
                "defect",
                "--data",
                str(data),
                "--base",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--calibrate-only",
            ]
        )
    run(base, data, tmp_path / "m", "--stop-at-step", "1")
    (tmp_path / "m" / "lexical.json").write_text("{}")
    with pytest.raises(SystemExit, match="lexical half"):
        run(tmp_path / "m", data, tmp_path / "o", "--calibrate-only")


def average_a_with_b(root: Path, data: Path) -> None:
    """Recalibrate root/a with its weights averaged with root/b's, into root/s."""
    run(root / "a", data, root / "s", "--calibrate-only", "--average-with", str(root / "b"))


def test_average_with_gives_the_mean_weights_and_says_so(setup, tmp_path):
    base, data = setup
    run(base, data, tmp_path / "a", "--stop-at-step", "2")
    run(base, data, tmp_path / "b", "--stop-at-step", "3", "--seed", "4")
    average_a_with_b(tmp_path, data)
    a, b, s = (load_file(str(tmp_path / n / "model.safetensors")) for n in "abs")
    k = next(k for k in a if k.startswith("defect_head") and k.endswith("weight"))
    assert not torch.equal(a[k], b[k])
    # Saved in fp16: the mean of the two, to fp16 rounding.
    torch.testing.assert_close(
        s[k].float(), (a[k].float() + b[k].float()) / 2, atol=2e-3, rtol=2e-3
    )
    meta = json.loads((tmp_path / "s" / "alpine.json").read_text())
    assert [m["dir"] for m in meta["averaged_with"]] == [str(tmp_path / "b")]
    assert meta["averaged_with"][0]["training"]["seed"] == 4
    assert "steps" not in meta["valid"]  # no longer one run's steps
    assert meta["calibrations"][-1]["average_with"] == [str(tmp_path / "b")]


def test_average_with_refuses_a_model_that_reads_code_differently(setup, tmp_path, capsys):
    base, data = setup
    run(base, data, tmp_path / "a", "--stop-at-step", "1")
    run(base, data, tmp_path / "b", "--stop-at-step", "1", "--max-tokens", "64")
    with pytest.raises(SystemExit, match="max_tokens differs"):
        average_a_with_b(tmp_path, data)
    with pytest.raises(SystemExit):
        run(base, data, tmp_path / "t", "--average-with", str(tmp_path / "b"))
    assert "--average-with needs --calibrate-only" in capsys.readouterr().err


def test_bad_input_is_a_train_error_from_the_stage_and_a_message_from_the_cli(setup, tmp_path):
    """Below cli/ a bad input raises TrainError; the command line says it as sys.exit did."""
    _, data = setup
    bad = tmp_path / "gpt"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "gpt2"}')
    argv = ["--data", str(data), "--base", str(bad), "--out", str(tmp_path / "o"), "--threads", "1"]
    args = defect.parse_args(argv)
    source = defect.settle_options(args)
    with pytest.raises(TrainError, match="model_type 'gpt2' is not bert or roberta") as raised:
        defect.load_data(args, tmp_path / "o.ckpt", source)
    with pytest.raises(SystemExit) as exited:
        cli_main(["train", "defect", *argv])
    # SystemExit(message), as sys.exit(message): the message on stderr, exit status 1.
    assert exited.value.code == str(raised.value)
