"""The plain-torch encoder (model/encoder.py) computes what transformers' BERT/RoBERTa does,
loads the same weights, and keeps transformers (and scikit-learn) out of a scoring process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from alpine_lsp.model.encoder import Encoder, EncoderConfig
from alpine_lsp.pruning import PruningConfig, encode

transformers = pytest.importorskip("transformers")


def _pair(kind: str):
    cls_cfg, cls_model = {
        "bert": (transformers.BertConfig, transformers.BertModel),
        "roberta": (transformers.RobertaConfig, transformers.RobertaModel),
    }[kind]
    torch.manual_seed(3)
    config = cls_cfg(
        vocab_size=90,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=70,
        type_vocab_size=1 if kind == "roberta" else 2,
    )
    hf = cls_model(config, add_pooling_layer=False).eval()
    lite = Encoder(EncoderConfig.from_dict(config.to_dict())).eval()
    lite.load_state_dict(hf.state_dict(), strict=True)
    return hf, lite, config


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("alpha", [None, 0.3])
def test_same_outputs_as_transformers(kind: str, alpha: float | None) -> None:
    hf, lite, config = _pair(kind)
    pad = config.pad_token_id
    ids = torch.randint(3, 90, (3, 40))
    mask = torch.ones_like(ids)
    ids[1, 25:] = pad  # padded rows: RoBERTa's positions skip padding
    mask[1, 25:] = 0
    cfg = PruningConfig(alpha=alpha, layers="all") if alpha else PruningConfig(layers="none")
    a = encode(hf, ids, mask, cfg)
    b = encode(lite, ids, mask, cfg)
    assert torch.equal(a.lengths, b.lengths)
    assert torch.allclose(a.hidden, b.hidden, atol=1e-6)
    # Unpruned, transformers' own forward agrees too.
    if alpha is None:
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(ref[0], b.hidden[0], atol=1e-5)
        assert torch.allclose(ref[1, :25], b.hidden[1, :25], atol=1e-5)


def test_config_round_trip_and_bad_configs(tmp_path) -> None:
    _, lite, config = _pair("roberta")
    lite.config.to_json_file(tmp_path / "config.json")
    again = EncoderConfig.from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert again.to_dict() == json.loads(json.dumps(lite.config.to_dict()))
    assert again.hidden_size == 32 and again.pad_token_id == config.pad_token_id
    for bad in (
        {"model_type": "gpt2"},
        {**config.to_dict(), "hidden_size": "wide"},
        {**config.to_dict(), "hidden_act": "mystery"},
    ):
        with pytest.raises(ValueError):
            EncoderConfig.from_dict(bad)


def test_scoring_imports_no_transformers_sklearn_or_dynamo() -> None:
    # torch._dynamo (and sympy with it) is what a meta-device build costs: 2 s per load.
    code = (
        "import sys\n"
        "from alpine_lsp import load_model\n"
        "m = load_model(threads=1)\n"
        "p = m.defect_probability(['int f(char *s) { return strlen(s); }'], 'c')\n"
        "assert 0 <= p[0] <= 1\n"
        "mods = set(sys.modules)\n"
        "heavy = sorted({k.split('.')[0] for k in mods} & {'transformers', 'sklearn', 'sympy'})\n"
        "heavy += sorted(mods & {'torch._dynamo'})\n"
        "print('heavy', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "heavy []" in proc.stdout, proc.stdout
