"""TransformerLens models by name (downloaded from the Hugging Face hub) and local Hugging Face folders.

Names go through TransformerLens's ``from_pretrained``, so any model it supports works when the hub is
reachable. The Hugging Face model loaded on the way is kept as the generation twin. Offline, loading
fails with one line that names the offline models instead of a long network traceback.

A local folder (``config.json`` + weights) is converted without the hub: Llama-architecture folders
with the same hand-written config as the embedded model, others with TransformerLens's converters,
which accept a local path.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from yfpo_core.errors import ModelUnavailableError
from yfpo_core.models.base import LoadedModel, weights_fingerprint
from yfpo_core.models.prompts import ChatPromptFormat, PlainPromptFormat

OFFLINE_ALTERNATIVES = "Offline, use the embedded default 'smollm2-135m-instruct' or the toy model 'toy-arith'."


def _prompt_format(tokenizer: Any):
    if getattr(tokenizer, "chat_template", None):
        return ChatPromptFormat.from_tokenizer(tokenizer), False
    return PlainPromptFormat(), tokenizer.bos_token_id is not None


def _handle(name: str, model: Any, tokenizer: Any, hf_model: Any, source: str) -> LoadedModel:
    tokenizer.padding_side = "right"
    model.eval()
    prompt_format, prepend_bos = _prompt_format(tokenizer)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, prompt_format=prompt_format,
                       prepend_bos=prepend_bos, source=source, fingerprint=weights_fingerprint(model),
                       hf_twin_loader=lambda: hf_model)


def load_hub_model(name: str, device: str = "cpu") -> LoadedModel:
    """Load a TransformerLens model name or a local Hugging Face folder (see the module docstring)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return load_local_folder(path, device)
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        official = loading.get_official_model_name(name)
    except ValueError:
        raise ModelUnavailableError(
            f"'{name}' is not a built-in model, a TransformerLens model name or a local folder. "
            "Run `yfpo models` for the built-in ones; TransformerLens names are listed in "
            "transformer_lens.loading_from_pretrained.OFFICIAL_MODEL_NAMES.") from None
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(official, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(official)
    except OSError as exc:
        raise ModelUnavailableError(
            f"Cannot load '{name}': the Hugging Face hub is not reachable and the model is not in the local "
            f"Hugging Face cache ({type(exc).__name__}). {OFFLINE_ALTERNATIVES}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer.from_pretrained(official, hf_model=hf_model, tokenizer=tokenizer, device=device,
                                                  dtype=torch.float32)
    return _handle(name, model, tokenizer, hf_model.to(device), f"Hugging Face hub: {official}")


def load_local_folder(path: Path, device: str = "cpu") -> LoadedModel:
    """Convert a local Hugging Face causal-LM folder to a processed ``HookedTransformer``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise ModelUnavailableError(f"{path} has no config.json: point --model at a Hugging Face model folder "
                                    "(the output of save_pretrained).")
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        found = f" (it holds {', '.join(pickles[:3])}: pickle files, which the workbench never loads)" if pickles else ""
        raise ModelUnavailableError(f"{path} has no .safetensors weights{found}; convert the weights with "
                                    "save_pretrained(..., safe_serialization=True) and point --model at that folder")
    try:
        hf_config = AutoConfig.from_pretrained(path)
        # use_safetensors=True: never unpickle a user's file (a .bin checkpoint can run code when loaded).
        hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - a damaged user folder fails in many library-specific ways
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelUnavailableError(f"Cannot load the model folder {path}: {reason}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if hf_config.model_type == "llama":
            from yfpo_core.models.llama import hooked_from_llama

            model, _ = hooked_from_llama(hf_model, tokenizer, device=device)
        else:
            model = _hooked_via_transformer_lens(path, hf_model, tokenizer, device)
    return _handle(str(path), model, tokenizer, hf_model.to(device), f"local folder {path}")


def _hooked_via_transformer_lens(path: Path, hf_model: Any, tokenizer: Any, device: str):
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    try:
        cfg = loading.get_pretrained_model_config(str(path), hf_cfg=hf_model.config.to_dict(), fold_ln=True,
                                                  device=device, dtype=torch.float32)
        state_dict = loading.get_pretrained_state_dict(str(path), cfg, hf_model, dtype=torch.float32)
    except (ValueError, NotImplementedError, KeyError, AttributeError) as exc:
        raise ModelUnavailableError(
            f"TransformerLens cannot convert the architecture of {path} ({hf_model.config.model_type}): {exc}. "
            "Use a Llama or GPT-2 style model.".splitlines()[0]) from None
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state_dict, fold_ln=True, center_writing_weights=True, center_unembed=True,
                                      fold_value_biases=True)
    return model.to(device, print_details=False)
