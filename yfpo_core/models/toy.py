"""The ``toy-arith`` model: a tiny character-level GPT-2-style transformer trained on toy word problems.

Why a toy model: it trains in minutes on a laptop CPU (:mod:`yfpo_core.training.toy_pretraining`), it is good at
its own problems (:mod:`yfpo_core.problems.synthetic`), and it is small enough (two layers, 1024 MLP
neurons) that every analysis in the workbench runs in seconds. Tests and demos use it for that.

* **Tokenizer**: one token per character of :data:`TOY_ALPHABET` plus ``<pad> <bos> <eos> <unk>``, as a
  Hugging Face ``PreTrainedTokenizerFast``, so the rest of the workbench treats it like any other.
  Character tokens make numbers digit by digit, the same for every number, and decoding is exact.
* **Architecture**: TransformerLens ``HookedTransformer``, GPT-2 family: LayerNorm (``"LN"``, kept raw:
  weights are *not* folded or centred, attribution works on this exact form), GELU MLPs, learned
  absolute positions, untied unembedding. See :data:`DEFAULT_ARCHITECTURE`.
* **Files**: a folder with ``model.safetensors`` (parameters only, fp32) and ``config.json`` (the
  ``HookedTransformerConfig`` keyword arguments, the tokenizer alphabet, the weights' fingerprint and
  training metadata). Written atomically by :func:`save_toy_model`; read by :func:`load_toy_model`
  with ``safetensors`` only (never pickle).

Where the weights come from: ``models_cache_dir()/"toy-arith"`` if a user retrained the model there
(``yfpo toy train``), else the copy shipped in ``yfpo_core/assets/toy-arith``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from yfpo_core.errors import ModelUnavailableError
from yfpo_core.models.base import LoadedModel, weights_fingerprint
from yfpo_core.paths import models_cache_dir, package_assets_dir
from yfpo_core.problems.synthetic import TOY_ALPHABET
from yfpo_core.models.prompts import PlainPromptFormat

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer
    from transformers import PreTrainedTokenizerFast

NAME = "toy-arith"
FILE_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAIN_HINT = "yfpo toy train"

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)  # ids 0..3; characters follow in alphabet order

# The shipped architecture. 2 layers x d_model 128 trains to high accuracy in a few CPU minutes; a wider
# or deeper model is better in principle but undertrained in that budget.
DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "n_layers": 2,
    "d_model": 128,
    "n_heads": 4,
    "d_mlp": 512,
    "n_ctx": 256,
}


# -- tokenizer --------------------------------------------------------------------------------------
def toy_vocab() -> dict[str, int]:
    """Token -> id: the special tokens first, then each alphabet character in order."""
    return {token: i for i, token in enumerate([*SPECIAL_TOKENS, *TOY_ALPHABET])}


def toy_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh character-level tokenizer (a new object each call, so callers may mutate it).

    ``tokenizer(text, add_special_tokens=False)`` gives one id per character (unknown characters become
    ``<unk>``); with special tokens it prepends ``<bos>``, which is also what TransformerLens expects
    from ``model.to_tokens``. The ``Fuse`` decoder joins tokens with nothing in between, and clean-up of
    spaces is off, so ``decode(encode(text)) == text`` for every text over the alphabet.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = toy_vocab()
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every char, \n too
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])])
    # name_or_path and add_bos_token=True make TransformerLens use this object as is (it would otherwise
    # try to reload the tokenizer from the hub to get one that adds BOS).
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, name_or_path=NAME, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        unk_token=UNK, padding_side="right", clean_up_tokenization_spaces=False, add_bos_token=True)


# -- architecture -----------------------------------------------------------------------------------
def toy_config_kwargs(architecture: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """JSON-serialisable ``HookedTransformerConfig`` keyword arguments for a toy model.

    Args:
        architecture: Overrides of :data:`DEFAULT_ARCHITECTURE` (``n_layers``, ``d_model``, ``n_heads``,
            ``d_mlp``, ``n_ctx``); ``d_head`` defaults to ``d_model // n_heads``.
    """
    arch = {**DEFAULT_ARCHITECTURE, **(architecture or {})}
    if arch["d_model"] % arch["n_heads"]:
        raise ValueError(f"d_model {arch['d_model']} is not divisible by n_heads {arch['n_heads']}")
    return {
        "model_name": NAME,
        "n_layers": int(arch["n_layers"]),
        "d_model": int(arch["d_model"]),
        "n_heads": int(arch["n_heads"]),
        "d_head": int(arch.get("d_head") or arch["d_model"] // arch["n_heads"]),
        "d_mlp": int(arch["d_mlp"]),
        "n_ctx": int(arch["n_ctx"]),
        "d_vocab": len(toy_vocab()),
        "act_fn": "gelu",
        "normalization_type": "LN",
        "positional_embedding_type": "standard",
        "default_prepend_bos": True,
    }


def _hooked_transformer(config_kwargs: Mapping[str, Any], device: str, init_weights: bool) -> HookedTransformer:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(**config_kwargs, dtype=torch.float32, device=device, init_weights=init_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "HookedTransformer is deprecated" (TL 3.x)
        return HookedTransformer(cfg, tokenizer=toy_tokenizer(), move_to_device=False)


def build_toy_model(config_kwargs: Mapping[str, Any] | None = None, seed: int = 0,
                    device: str = "cpu") -> HookedTransformer:
    """A randomly initialised toy model (GPT-2 init), a pure function of ``seed``.

    Args:
        config_kwargs: ``HookedTransformerConfig`` keyword arguments, e.g. from :func:`toy_config_kwargs`
            (default: the shipped architecture).
        seed: Seed of the initialisation. The global torch RNG is forked, so callers' RNG state is
            untouched (TransformerLens's own ``cfg.seed`` would reseed torch, numpy and ``random``).
    """
    kwargs = dict(config_kwargs) if config_kwargs is not None else toy_config_kwargs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _hooked_transformer(kwargs, "cpu", init_weights=True)
    model.to(device, print_details=False)
    return model


def config_kwargs_of(model: HookedTransformer) -> dict[str, Any]:
    """The toy config keyword arguments of a built model (for saving it)."""
    cfg = model.cfg
    return toy_config_kwargs({"n_layers": cfg.n_layers, "d_model": cfg.d_model, "n_heads": cfg.n_heads,
                              "d_head": cfg.d_head, "d_mlp": cfg.d_mlp, "n_ctx": cfg.n_ctx})


def wrap_toy_model(model: HookedTransformer, source: str) -> LoadedModel:
    """The :class:`LoadedModel` handle for a toy ``HookedTransformer`` (loaded, or just trained)."""
    return LoadedModel(name=NAME, model=model, tokenizer=model.tokenizer, prompt_format=PlainPromptFormat(),
                       prepend_bos=True, source=source, fingerprint=weights_fingerprint(model),
                       hf_twin_loader=None, native_problems="toy")


# -- files ------------------------------------------------------------------------------------------
def shipped_toy_dir() -> Path:
    """The trained weights that ship with the package."""
    return package_assets_dir() / NAME


def toy_cache_dir() -> Path:
    """Where ``yfpo toy train`` puts a retrained model by default; preferred over the shipped one."""
    return models_cache_dir() / NAME


def save_toy_model(model: HookedTransformer, folder: Path | str, metadata: Mapping[str, Any]) -> Path:
    """Write ``model.safetensors`` + ``config.json`` to ``folder``, replacing it atomically.

    The files are written to a temporary sibling folder that is then renamed over ``folder``, so a
    reader never sees a half-written model, and an interrupted save leaves the old one intact.

    Args:
        model: A toy ``HookedTransformer`` (any device; saved as contiguous fp32 CPU tensors).
        folder: The destination folder (created; an existing one is replaced).
        metadata: JSON-serialisable facts about how the weights were made (training config, seed,
            steps, metrics, the command, versions); stored under ``"metadata"`` in ``config.json``.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    params = {name: p.detach().to("cpu", torch.float32).contiguous() for name, p in model.named_parameters()}
    config = {
        "format": FILE_FORMAT,
        "name": NAME,
        "hooked_transformer_config": config_kwargs_of(model),
        "tokenizer": {"alphabet": TOY_ALPHABET, "special_tokens": list(SPECIAL_TOKENS)},
        "fingerprint": weights_fingerprint(model),
        "metadata": dict(metadata),
    }
    text = json.dumps(config, indent=2)  # fail on non-serialisable metadata before touching the disk
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(params, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "name": NAME})
        (tmp / CONFIG_FILE).write_text(text + "\n")
        for path in (tmp / WEIGHTS_FILE, tmp / CONFIG_FILE):
            path.chmod(0o644)  # safetensors writes 0600; the shipped and cached models are meant to be read
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        if folder.exists():
            # os.replace cannot replace a non-empty folder: move the old one aside first, then drop it.
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / NAME)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_toy_config(folder: Path | str) -> dict[str, Any]:
    """The parsed ``config.json`` of a toy model folder (raises :class:`ModelUnavailableError`)."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelUnavailableError(f"No toy model at {folder} ({CONFIG_FILE} is missing). "
                                    f"Train one with: {TRAIN_HINT}") from None
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"The toy model's {path} is unreadable ({exc}). "
                                    f"Retrain it with: {TRAIN_HINT}") from None
    if not isinstance(config, dict) or config.get("format") != FILE_FORMAT:
        raise ModelUnavailableError(f"{path} is not a toy model config of format {FILE_FORMAT}. "
                                    f"Retrain it with: {TRAIN_HINT}")
    return config


def _load_folder(folder: Path, device: str, source: str) -> LoadedModel:
    from safetensors.torch import load_file

    config = read_toy_config(folder)
    fix = f"Retrain it with: {TRAIN_HINT}"
    tokenizer_info = config.get("tokenizer") or {}
    if (tokenizer_info.get("alphabet") != TOY_ALPHABET
            or list(tokenizer_info.get("special_tokens") or []) != list(SPECIAL_TOKENS)):
        raise ModelUnavailableError(f"The toy model at {folder} was trained with a different alphabet than "
                                    f"this version of the workbench uses. {fix}")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelUnavailableError(f"The toy model at {folder} has no {WEIGHTS_FILE}. {fix}")
    try:
        model = _hooked_transformer(config["hooked_transformer_config"], "cpu", init_weights=False)
        params = load_file(str(weights), device="cpu")
        missing, unexpected = model.load_state_dict(params, strict=False)
        buffers = {name for name, _ in model.named_buffers()}
        if unexpected or set(missing) - buffers:
            raise ValueError(f"missing {sorted(set(missing) - buffers)[:3]}, unexpected {unexpected[:3]}")
    except ModelUnavailableError:
        raise
    except Exception as exc:  # truncated file, wrong shapes, bad config keys
        raise ModelUnavailableError(f"The toy model at {folder} does not load ({type(exc).__name__}: "
                                    f"{str(exc)[:200]}). {fix}") from None
    recorded = config.get("fingerprint")
    if recorded is not None and weights_fingerprint(model) != recorded:
        raise ModelUnavailableError(f"The toy model's weights at {folder} do not match the fingerprint in "
                                    f"its {CONFIG_FILE} (corrupted or replaced). {fix}")
    model.to(device, print_details=False)
    model.eval()
    return wrap_toy_model(model, source)


def resolve_toy_folder() -> Path:
    """The folder :func:`load_toy_model` reads by default: the user's retrained model in
    :func:`toy_cache_dir` if that folder holds one (a ``config.json``), else the shipped
    :func:`shipped_toy_dir`. Checks only that the folder is there; loading checks the files."""
    cache = toy_cache_dir()
    if (cache / CONFIG_FILE).exists():
        return cache
    shipped = shipped_toy_dir()
    if not (shipped / CONFIG_FILE).exists():
        raise ModelUnavailableError(f"No toy model: neither {cache} nor the shipped {shipped} holds one. "
                                    f"Train it with: {TRAIN_HINT}")
    return shipped


def load_toy_model(device: str = "cpu", path: Path | str | None = None) -> LoadedModel:
    """Load the toy model.

    Args:
        device: Torch device.
        path: A toy model folder; by default :func:`resolve_toy_folder` (a retrained model in the cache,
            else the shipped one). A cache folder that holds a broken model is an error, not a silent
            fallback: a user who retrained the model should not unknowingly get different weights.

    Raises:
        ModelUnavailableError: nothing to load, or a file is missing or corrupt; the message names the fix.
    """
    if path is not None:
        folder = Path(path)
        return _load_folder(folder, device, f"toy model at {folder}")
    folder = resolve_toy_folder()
    if folder == toy_cache_dir():
        try:
            return _load_folder(folder, device, f"retrained toy model (cache: {folder})")
        except ModelUnavailableError as exc:
            raise ModelUnavailableError(f"{exc} Or delete {folder} to use the shipped model.") from None
    return _load_folder(folder, device, f"toy model shipped with the package ({folder})")


__all__ = ["DEFAULT_ARCHITECTURE", "NAME", "SPECIAL_TOKENS", "build_toy_model", "config_kwargs_of",
           "load_toy_model", "read_toy_config", "resolve_toy_folder", "save_toy_model", "shipped_toy_dir",
           "toy_cache_dir", "toy_config_kwargs", "toy_tokenizer", "toy_vocab", "wrap_toy_model"]
