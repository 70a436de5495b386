"""Loading models by name or folder, offline errors, and agreement of each model with its HF twin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_hooked, tiny_toy
from yfpo_core.errors import ModelUnavailableError
from yfpo_core.scoring.generation import generate_hf, generate_tl, greedy_generate
from yfpo_core.models import load_model, register_model
from yfpo_core.models.base import weights_fingerprint
from yfpo_core.models.toy import toy_tokenizer


@pytest.fixture(scope="module")
def local_folders(tmp_path_factory):
    """Tiny random GPT-2 and Llama models saved as Hugging Face folders with the toy tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = toy_tokenizer()
    root = tmp_path_factory.mktemp("hf-folders")
    vocab = len(tokenizer)
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    models = {
        "gpt2": GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=vocab, n_positions=128,
                                           n_ctx=128, **special)),
        "llama": LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                              num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab,
                                              max_position_embeddings=128, **special)),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_local_folder_matches_its_hf_twin(local_folders, family):
    loaded = load_model(str(local_folders / family))
    ids = torch.tensor([loaded.encode_prompt("Q: Ann has 12 pens. She buys 7 more.\nA: 12+7=19.")])
    with torch.no_grad():
        tl_logits = loaded.model(ids)
        hf_logits = loaded.hf_twin()(ids).logits
    # TransformerLens centres the unembedding, so compare logits up to a constant per position.
    tl_logits = tl_logits - tl_logits.mean(-1, keepdim=True)
    hf_logits = hf_logits - hf_logits.mean(-1, keepdim=True)
    assert (tl_logits - hf_logits).abs().max() < 1e-4
    assert torch.equal(tl_logits.argmax(-1), hf_logits.argmax(-1))


def test_generation_paths_agree(local_folders):
    loaded = load_model(str(local_folders / "llama"))
    prompt = loaded.encode_prompt("Q: How many?\nA: ")
    with torch.no_grad():
        tl = generate_tl(loaded, prompt, max_new_tokens=12)
        (hf,) = generate_hf(loaded, loaded.hf_twin(), [prompt], max_new_tokens=12)
    assert tl == hf
    # A batch with prompts of different lengths (left padding) gives the same as one at a time.
    prompts = ["Q: a\nA: ", "Q: a longer question here\nA: "]
    batched = greedy_generate(loaded, prompts, max_new_tokens=8, batch_size=2)
    single = [greedy_generate(loaded, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_hub_name_offline_gives_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        load_model("gpt2")
    message = str(err.value)
    assert "\n" not in message
    assert "hub is not reachable" in message and "smollm2-135m-instruct" in message


def test_unknown_name_and_bad_folder(tmp_path):
    with pytest.raises(ModelUnavailableError, match="not a built-in model"):
        load_model("no-such-model-anywhere")
    with pytest.raises(ModelUnavailableError, match="config.json"):
        load_model(str(tmp_path))


def test_registered_models_and_handles_pass_through():
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs

    tiny = tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32)
    register_model("tiny-for-test", lambda device: tiny)
    assert load_model("tiny-for-test") is tiny
    assert load_model(tiny) is tiny
    copy = tiny.with_model(build_toy_model(toy_config_kwargs({"n_layers": 1, "d_model": 16, "n_heads": 2,
                                                              "d_mlp": 32}), seed=1))
    assert copy.fingerprint != tiny.fingerprint and copy.hf_twin() is None


def test_fingerprint_sees_a_single_changed_weight():
    model = tiny_hooked("llama")
    before = weights_fingerprint(model)
    with torch.no_grad():
        model.blocks[1].mlp.W_out[3, 4] += 1e-3
    assert weights_fingerprint(model) != before


def test_runs_live_under_the_user_data_directory_never_the_repository(monkeypatch, tmp_path):
    from yfpo_core.paths import runs_dir
    from yfpo_core.runs import new_run_dir

    monkeypatch.delenv("YFPO_RUNS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert runs_dir() == tmp_path / "data" / "yfpo" / "runs"
    made = new_run_dir("x")
    assert made.parent == tmp_path / "data" / "yfpo" / "runs" and not (tmp_path / "runs").exists()
    monkeypatch.delenv("XDG_DATA_HOME")
    assert runs_dir() == Path.home() / ".local" / "share" / "yfpo" / "runs"
    monkeypatch.setenv("YFPO_RUNS_DIR", str(tmp_path / "mine"))
    assert runs_dir() == tmp_path / "mine"
