"""The toy-arith model (yfpo_core.models.toy): character tokenizer, files, the shipped weights. Its problems are
tested in tests/problems/test_synthetic.py, its pre-training in tests/training/test_toy_pretraining.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from yfpo_core.errors import ModelUnavailableError
from yfpo_core.scoring.evaluate import exact_match
from yfpo_core.models import load_model
from yfpo_core.models.base import weights_fingerprint
from yfpo_core.models.toy import (
    CONFIG_FILE,
    SPECIAL_TOKENS,
    WEIGHTS_FILE,
    build_toy_model,
    load_toy_model,
    read_toy_config,
    resolve_toy_folder,
    save_toy_model,
    shipped_toy_dir,
    toy_cache_dir,
    toy_config_kwargs,
    toy_tokenizer,
)
from yfpo_core.problems.synthetic import TOY_ALPHABET, generate_toy_nonmath, generate_toy_problems
from yfpo_core.training.toy_pretraining import training_text

HELD_OUT_SEED = 777  # neither the training seed (0) nor the training eval seed
TINY = {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_mlp": 64, "n_ctx": 192}


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def shipped():
    return load_toy_model(path=shipped_toy_dir())


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YFPO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- tokenizer --------------------------------------------------------------------------------------
def test_tokenizer_round_trip(tokenizer):
    texts = [training_text(p.question, p.solution) for p in generate_toy_problems(400, seed=2)]
    texts += generate_toy_nonmath(100, seed=2) + [TOY_ALPHABET, "  double  spaces ,. 's\n\n"]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text)
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    assert len(set(tokenizer(TOY_ALPHABET, add_special_tokens=False)["input_ids"])) == len(TOY_ALPHABET)


def test_tokenizer_special_tokens(tokenizer):
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [
        0, 1, 2, 3]
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == list(SPECIAL_TOKENS)
    assert tokenizer.padding_side == "right"
    assert len(tokenizer) == len(TOY_ALPHABET) + len(SPECIAL_TOKENS)
    assert tokenizer("ab")["input_ids"][0] == tokenizer.bos_token_id  # with special tokens: <bos> first
    assert tokenizer("a€b", add_special_tokens=False)["input_ids"][1] == tokenizer.unk_token_id
    assert tokenizer.decode([1, *tokenizer("Q: 1", add_special_tokens=False)["input_ids"], 2]) == "<bos>Q: 1<eos>"


# -- files ------------------------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path):
    model = build_toy_model(toy_config_kwargs(TINY), seed=1)
    folder = save_toy_model(model, tmp_path / "toy", {"note": "test"})
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    loaded = load_toy_model(path=folder)
    assert loaded.fingerprint == weights_fingerprint(model) == read_toy_config(folder)["fingerprint"]
    assert read_toy_config(folder)["metadata"] == {"note": "test"}
    assert not loaded.model.training
    # saving again replaces the folder and leaves no temporary folders behind
    other = build_toy_model(toy_config_kwargs(TINY), seed=2)
    save_toy_model(other, folder, {})
    assert load_toy_model(path=folder).fingerprint == weights_fingerprint(other) != loaded.fingerprint
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]


def test_build_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = build_toy_model(toy_config_kwargs(TINY), seed=5), build_toy_model(toy_config_kwargs(TINY), seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert weights_fingerprint(a) == weights_fingerprint(b)
    assert weights_fingerprint(build_toy_model(toy_config_kwargs(TINY), seed=6)) != weights_fingerprint(a)


def test_missing_and_corrupt_files_raise(tmp_path):
    with pytest.raises(ModelUnavailableError, match="yfpo toy train"):
        load_toy_model(path=tmp_path / "nothing")
    good = save_toy_model(build_toy_model(toy_config_kwargs(TINY), seed=1), tmp_path / "good", {})

    def broken(name: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(good, copy)
        return copy

    truncated = broken("truncated")
    data = (truncated / WEIGHTS_FILE).read_bytes()
    (truncated / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    flipped = broken("flipped")  # same size, one weight byte changed: caught by the fingerprint
    (flipped / WEIGHTS_FILE).write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    no_weights = broken("no_weights")
    (no_weights / WEIGHTS_FILE).unlink()
    bad_json = broken("bad_json")
    (bad_json / CONFIG_FILE).write_text("{not json")
    other_alphabet = broken("other_alphabet")
    config = json.loads((other_alphabet / CONFIG_FILE).read_text())
    config["tokenizer"]["alphabet"] += "!"
    (other_alphabet / CONFIG_FILE).write_text(json.dumps(config))
    for folder in (truncated, flipped, no_weights, bad_json, other_alphabet):
        with pytest.raises(ModelUnavailableError, match="yfpo toy train"):
            load_toy_model(path=folder)


def test_default_load_falls_back_to_shipped_and_prefers_cache(private_cache):
    shipped = load_toy_model()
    assert str(shipped_toy_dir()) in shipped.source and resolve_toy_folder() == shipped_toy_dir()
    assert not toy_cache_dir().exists()
    tiny = build_toy_model(toy_config_kwargs(TINY), seed=3)
    save_toy_model(tiny, toy_cache_dir(), {})
    cached = load_model("toy-arith")
    assert cached.fingerprint == weights_fingerprint(tiny) != shipped.fingerprint
    assert str(toy_cache_dir()) in cached.source and resolve_toy_folder() == toy_cache_dir()
    (toy_cache_dir() / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelUnavailableError, match="delete"):
        load_toy_model()


# -- the shipped model ------------------------------------------------------------------------------
def test_shipped_model_files(shipped):
    config = read_toy_config(shipped_toy_dir())
    assert shipped.fingerprint == config["fingerprint"]
    assert load_toy_model(path=shipped_toy_dir()).fingerprint == shipped.fingerprint  # stable
    meta = config["metadata"]
    assert meta["training_config"]["seed"] != HELD_OUT_SEED
    assert meta["final_metrics"]["exact_match"] >= 0.9
    assert "train_toy_model" in meta["python_command"]
    size = sum(p.stat().st_size for p in shipped_toy_dir().iterdir())
    assert size < 3_000_000
    cfg = shipped.model.cfg
    assert (cfg.normalization_type, cfg.act_fn, cfg.positional_embedding_type) == ("LN", "gelu", "standard")
    assert shipped.name == "toy-arith" and shipped.prepend_bos and not shipped.has_hf_twin
    assert shipped.encode_prompt("Q: ")[0] == shipped.tokenizer.bos_token_id


def test_shipped_model_solves_held_out_problems(shipped):
    problems = generate_toy_problems(48, seed=HELD_OUT_SEED)
    report = exact_match(shipped, problems, max_new_tokens=48)
    assert report.accuracy >= 0.8, report.to_frame()[["gold", "output"]]
