"""Parameter counts and KV-cache sizes against published figures."""

import json

import pytest

from simulator.catalog import catalog, get_model
from simulator.errors import CapsimError


def narayanan_eq2(l: int, h: int, V: int = 51200, s: int = 2048) -> float:
    """Narayanan et al. SC'21 eq. 2."""
    return 12 * l * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * l * h))


@pytest.mark.parametrize("name", [n for n in catalog() if n.startswith(("megatron-", "gpt3-"))])
def test_megatron_family_matches_eq2(name):
    m = get_model(name)
    # eq. 2 omits the final LayerNorm (2h parameters): a relative difference below 1e-5
    assert m.total_params() == pytest.approx(narayanan_eq2(m.layers, m.hidden), rel=1e-5)


def test_published_sizes():
    assert get_model("gpt3-175b").total_params() / 1e9 == pytest.approx(174.6, abs=0.05)
    assert get_model("megatron-1t").total_params() / 1e9 == pytest.approx(1008.0, abs=0.1)
    assert get_model("llama-3.1-8b").total_params() == 8_030_261_248
    assert get_model("llama-3.1-70b").total_params() / 1e9 == pytest.approx(70.6, abs=0.05)
    assert get_model("llama-2-7b").total_params() == 6_738_415_616
    assert get_model("bert-large").total_params() == 335_141_888
    assert get_model("vit-b-16").total_params() == 86_567_656
    mix = get_model("mixtral-8x7b")
    assert mix.total_params() / 1e9 == pytest.approx(46.70, abs=0.01)
    assert mix.active_params() / 1e9 == pytest.approx(12.88, abs=0.01)
    assert get_model("qwen3-32b").total_params() / 1e9 == pytest.approx(32.76, abs=0.01)


def test_kv_cache_per_token():
    # 2 (K,V) · 32 layers · 8 kv heads · 128 head_dim · 2 bytes
    assert get_model("llama-3.1-8b").kv_cache_bytes_per_token(2) == 131_072


def test_unknown_model_lists_closest():
    with pytest.raises(CapsimError, match="llama-3.1-8b"):
        get_model("llama-3-8b")


def _write(tmp_path, cfg):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return p


def test_hf_llama_config(tmp_path):
    cfg = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
           "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256, "tie_word_embeddings": False}
    assert get_model(str(_write(tmp_path, cfg))).total_params() == get_model("llama-3.1-8b").total_params()


def test_hf_gpt2_bert_mixtral_qwen3(tmp_path):
    gpt2 = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024, "vocab_size": 50257}
    assert get_model(str(_write(tmp_path, gpt2))).total_params() == 124_439_808  # HF GPT2Model
    bert = {"model_type": "bert", "num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16,
            "intermediate_size": 4096, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2}
    assert get_model(str(_write(tmp_path, bert))).total_params() == 335_141_888
    mix = {"model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
           "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000, "num_local_experts": 8,
           "num_experts_per_tok": 2}
    assert get_model(str(_write(tmp_path, mix))).total_params() == get_model("mixtral-8x7b").total_params()
    qwen = {"model_type": "qwen3", "num_hidden_layers": 64, "hidden_size": 5120, "num_attention_heads": 64,
            "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 25600, "vocab_size": 151936}
    assert get_model(str(_write(tmp_path, qwen))).total_params() == get_model("qwen3-32b").total_params()


def test_hf_config_errors(tmp_path):
    with pytest.raises(CapsimError, match="not supported"):
        get_model(str(_write(tmp_path, {"model_type": "t5"})))
    with pytest.raises(CapsimError, match="needs one of the keys"):
        get_model(str(_write(tmp_path, {"model_type": "llama", "hidden_size": 8})))
    with pytest.raises(CapsimError, match="does not exist"):
        get_model(str(tmp_path / "missing.json"))


def test_a_model_read_alone_is_the_catalogs_own() -> None:
    """get_model reads only the catalog file that holds the model (a run needs one); every name gives
    the model catalog() builds from all of them, field for field."""
    from simulator.catalog import _named

    for name, spec in catalog().items():
        alone = _named(name)
        assert alone is not None and alone.model_dump() == spec.model_dump()
        assert get_model(name.upper()) is alone                  # read once, any case
    assert _named("no-such-model") is None
    with pytest.raises(CapsimError, match="llama"):
        get_model("llama-3.1-8")                                  # the closest names from the whole catalog
