"""Builders shared by tests (SAELens-style): tiny random models, a tiny SAE, a trainer on a tiny model.

Every test that needs one of these builds it here, so that a change of the model classes or of sae-lens's
folder format is made once. The pytest fixtures that use them are in ``conftest.py``.
"""

from __future__ import annotations

from fractions import Fraction

import torch


def tiny_config(family: str = "gpt2", d_vocab: int = 40, **overrides):
    """A HookedTransformerConfig for a tiny model of the GPT-2 family (LayerNorm, GELU, learned positions)
    or the Llama family (RMSNorm, gated SiLU MLP, rotary attention with grouped KV heads)."""
    from transformer_lens import HookedTransformerConfig

    common = dict(n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=48, n_ctx=64, d_vocab=d_vocab,
                  dtype=torch.float32, device="cpu", seed=0)
    if family == "gpt2":
        family_kwargs = dict(act_fn="gelu", normalization_type="LN", positional_embedding_type="standard")
    elif family == "llama":
        family_kwargs = dict(act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
                             rotary_dim=8, gated_mlp=True, n_key_value_heads=2, final_rms=True)
    else:
        raise ValueError(family)
    return HookedTransformerConfig(**{**common, **family_kwargs, **overrides})


def tiny_hooked(family: str = "gpt2", **overrides):
    from transformer_lens import HookedTransformer

    model = HookedTransformer(tiny_config(family, **overrides), move_to_device=False)
    model.eval()
    return model


def tiny_toy(seed: int = 0, **architecture: int):
    """A tiny random model of the toy family (character tokenizer, so it reads toy problems), wrapped as the
    workbench wraps a loaded model: ``tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64)``."""
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, wrap_toy_model

    return wrap_toy_model(build_toy_model(toy_config_kwargs(architecture), seed=seed), source="test")


def save_tiny_sae(folder, d_in: int = 64, d_sae: int = 16, hook_name: str = "blocks.1.mlp.hook_post"):
    """A tiny SAE of ``d_sae`` features reading ``hook_name`` (width ``d_in``), with random weights drawn from a
    fixed seed, saved in sae-lens's folder format; returns the folder. What the tests do with it does not
    depend on training."""
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = hook_name
    sae = StandardSAE(cfg)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator))
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=generator) * 0.3)
    sae.save_model(str(folder))
    return folder


def assert_close_to_largest(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Every element within ``rel`` of the largest magnitude of ``expected``: the tolerance for scores whose
    small entries are sums that cancel."""
    scale = expected.abs().max().clamp_min(1e-12)
    assert float((actual - expected).abs().max() / scale) < rel


def save_tiny_hf_folders(root):
    """Tiny random GPT-2 and Llama models saved as Hugging Face folders ``root/gpt2`` and ``root/llama`` with the
    toy tokenizer; returns ``root``."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from yfpo_core.models.toy import toy_tokenizer

    tokenizer = toy_tokenizer()
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


def marked_answer(solution: str) -> Fraction:
    """The number right after the last '####' of a solution (stricter than extract_answer)."""
    from yfpo_core.problems.answers import find_numbers

    tail = solution[solution.rindex("####") + 4:]
    return find_numbers(tail)[0].value



# -- the CLI's tiny model (registered by the autouse ``tiny`` fixture of tests/cli/conftest.py) -------------------
TINY_CLI = "tiny-cli"


def cli_model():
    return tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=256)


# -- a trainer on a tiny model (the ``setup`` fixture of conftest.py registers the model and writes the set) --
TINY_TRAINER = "tiny-trainer-test"


def trainer_model():
    return tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=128)


def trainer_config(tmp_path, **overrides):
    """A short YFPO run of :data:`TINY_TRAINER` on toy problems with the set ``tmp_path / "set.json"``."""
    from yfpo_core.training.config import YFPOConfig

    base = dict(model=TINY_TRAINER, neuron_set=str(tmp_path / "set.json"), problems="toy", eval_problems="toy",
                n_train_problems=8, n_eval_problems=4, steps=6, batch_pairs=4, lam=1.0, trainable="units",
                lr=1e-2, warmup_steps=0, eval_every=3, checkpoint_every=2)
    return YFPOConfig(**{**base, **overrides})


def trainer_for(cfg):
    """A :class:`YFPOTrainer` on ``cfg``'s inputs, as a run would build it."""
    from yfpo_core.runs import resolve_inputs
    from yfpo_core.training.trainer import YFPOTrainer

    inputs = resolve_inputs(cfg)
    return YFPOTrainer(cfg, inputs.base, inputs.pairs, inputs.eval_problems, inputs.units, inputs.scores,
                       saes=inputs.saes, directions=inputs.directions, probe_units=inputs.probe_units,
                       probe_scores=inputs.probe_scores, probe_directions=inputs.probe_directions)


def write_run(folder, lam: float = 0.5, **config):
    """A finished run folder written through RunDir: a YFPO (or, with ``lam=0``, DPO) config of 4 steps, three
    metric lines (steps 0 to 2) and the status ``finished``. Returns its RunDir."""
    from yfpo_core.runs.run_dir import RunDir
    from yfpo_core.training import metric_names as M
    from yfpo_core.training.config import YFPOConfig

    run = RunDir(folder)
    folder.mkdir(parents=True)
    run.write_config(YFPOConfig(model="toy-arith", lam=lam, neuron_set="set.json" if lam else None, steps=4,
                                **config))
    run.append_metrics({M.STEP: 0, M.EVAL_RANKING_ACCURACY: 0.5})
    run.append_metrics({M.STEP: 1, M.LOSS: 0.6931471805599453, M.REWARDS_MARGINS: 0.125})
    run.append_metrics({M.STEP: 2, M.LOSS: 0.5, M.EVAL_RANKING_ACCURACY: 0.75})
    run.set_status("finished", last_step=2)
    return run


DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested 100,000 levels deep: what a reader must refuse in words


# -- neuron-set documents without a model ---------------------------------------------------------------------
DEMO_SAE = {"res2": {"hook_name": "blocks.2.hook_resid_post", "d_sae": 1024, "path_or_release": "saes/res2"}}


def fake_model(name: str = "toy", fingerprint: str = "abc123", n_layers: int = 3, d_mlp: int = 512):
    """No real model: the attributes a neuron set reads from a ``LoadedModel``."""
    from types import SimpleNamespace

    return SimpleNamespace(name=name, fingerprint=fingerprint,
                           model=SimpleNamespace(cfg=SimpleNamespace(n_layers=n_layers, d_mlp=d_mlp)))


def write_doc(tmp_path, doc, name="set.json"):
    """``doc`` written as JSON to ``tmp_path / name``."""
    path = tmp_path / name
    import json

    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def load_error(tmp_path, doc, model=None, **kwargs) -> str:
    """The message of the NeuronSetError that loading ``doc`` raises (it must name the file)."""
    import pytest

    from yfpo_core.units.neuron_set import NeuronSet, NeuronSetError

    path = write_doc(tmp_path, doc)
    with pytest.raises(NeuronSetError) as info:
        NeuronSet.load(path, model, **kwargs)
    message = str(info.value)
    assert str(path) in message  # every load error names the file
    return message


# -- a corpus of five texts for the activation index ------------------------------------------------------------
def _corpus_text(*fields):
    from yfpo_core.analysis.activation_index import CorpusText

    return CorpusText(*fields)


INDEX_TEXTS = [  # three math texts, two others
    _corpus_text("m/0", "Q: Ann has 12 pens. She buys 7 more.\nA: 12+7=19. #### 19\n", True, "t"),
    _corpus_text("o/0", "Q: What colour is the sky?\nA: blue\n", False, "t"),
    _corpus_text("m/1", "Q: Ben has 30 cats and gives 9 away.\nA: 30-9=21. #### 21\n", True, "t"),
    _corpus_text("o/1", "Q: Who wrote the letter?\nA: Ann did, with a pen.\n", False, "t"),
    _corpus_text("m/2", "Q: 6 boxes hold 4 eggs each.\nA: 6*4=24. #### 24\n", True, "t"),
]


# -- planted units: a tiny toy model (and SAE) whose best units are known by construction ----------------------
def attribution_toy():
    """The tiny toy model the attribution tests plant neurons in (seed 3, 2 layers of 64 neurons)."""
    return tiny_toy(seed=3, n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=96)


def hand_problems() -> list:
    """Four problems whose answer is 9 (the planted neurons' answer)."""
    from yfpo_core.problems.base import Problem

    questions = ["Ann has 9 pens and 9 cups. How many?", "Ben saw 9 cats. How many?",
                 "Cara ate 9 figs and 9 plums. How many?", "Dan made 9 hats. How many?"]
    return [Problem(id=f"hand/{i}", question=q, solution="#### 9", answer="9", source="test")
            for i, q in enumerate(questions)]


DRIVER = (1, 3)      # always on, writes towards the logits of " " and "9": the gold answer " 9"
NINE = (0, 5)        # fires only on the token "9": math text has it, the contrast text and wrong answer do not


def planted_model():
    """The tiny toy model with two planted neurons (see DRIVER and NINE)."""
    from yfpo_core.models.toy import toy_tokenizer

    loaded = attribution_toy()
    model, vocab = loaded.model, toy_tokenizer().get_vocab()
    axis = model.cfg.d_model - 1  # a residual dimension reserved for the "9" signal
    with torch.no_grad():
        model.W_E[:, axis] = 0.0
        model.W_pos[:, axis] = 0.0
        model.W_E[vocab["9"], axis] = 8.0
        for block in model.blocks:
            block.attn.W_O[..., axis] = 0.0
            block.mlp.W_out[:, axis] = 0.0
        layer, index = NINE
        model.blocks[layer].mlp.W_in[:, index] = 0.0
        model.blocks[layer].mlp.W_in[axis, index] = 2.0
        model.blocks[layer].mlp.b_in[index] = -3.0
        layer, index = DRIVER
        model.blocks[layer].mlp.W_in[:, index] = 0.0
        model.blocks[layer].mlp.b_in[index] = 3.0
        direction = model.W_U[:, vocab[" "]] + model.W_U[:, vocab["9"]]
        model.blocks[layer].mlp.W_out[index] = 3.0 * direction / direction.norm() ** 2
    return loaded


PLANTED_FEATURE = 3  # the feature of planted_sae() that reads and writes the DRIVER neuron


def planted_sae(model):
    """A hand-made SAE at blocks.1.mlp.hook_post whose feature 3 reads and writes the planted DRIVER neuron."""
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=64, d_sae=8, apply_b_dec_to_input=False)
    cfg.metadata.hook_name = "blocks.1.mlp.hook_post"
    sae = StandardSAE(cfg)
    torch.manual_seed(1)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(64, 8) * 0.01)
        sae.W_dec.copy_(torch.randn(8, 64) * 0.01)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_enc[:, PLANTED_FEATURE] = 0.0
        sae.W_enc[DRIVER[1], PLANTED_FEATURE] = 1.0
        sae.W_dec[PLANTED_FEATURE] = 0.0
        sae.W_dec[PLANTED_FEATURE, DRIVER[1]] = 1.0
    import warnings

    from yfpo_core.saes.sae import LoadedSAE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sae.use_error_term = True
    return LoadedSAE(sae, "planted", "blocks.1.mlp.hook_post", "memory")
