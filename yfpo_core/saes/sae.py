"""Sparse-autoencoder features as units: train SAEs with sae-lens offline, load them, splice them in.

* :func:`train_sae` runs sae-lens's own ``LanguageModelSAETrainingRunner`` (no rewrite of SAE training)
  on our model and a mix of math solutions and non-math text, and saves sae-lens's on-disk format
  (``cfg.json``, ``sae_weights.safetensors``, ``sparsity.safetensors``, ``runner_cfg.json``) plus
  ``yfpo_sae.json`` with the command that made it and its quality numbers.
* :func:`load_sae` reads a local SAE folder, the shipped default (``default``), or a released SAE by
  ``<release>/<sae_id>`` through sae-lens when the hub is reachable; :func:`resolve_sae_ref` is the one
  reading of such a reference (the app resolves with it before its cache; :mod:`yfpo_core.saes.set_saes`
  finds the SAE a neuron set's features come from).
* :class:`SAESpace` makes an SAE's features a :class:`~yfpo_core.units.space.UnitSpace`: the SAE
  is spliced in at its hook with sae-lens's error term (``use_error_term=True``: the reconstruction
  error is added back, so the model's output is unchanged), and its feature activations
  (``hook_sae_acts_post``) are what attribution, inspection and interventions read or change.
* :func:`sae_quality` measures L0, explained variance and the change in the model's loss when the SAE's
  reconstruction replaces the activation.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from yfpo_core.atomic import atomic_write_text
from yfpo_core.attribution.methods import frozen_parameters
from yfpo_core.units.space import ReadFn, UnitSpace
from yfpo_core.errors import YfpoError
from yfpo_core.models.base import LoadedModel
from yfpo_core.paths import package_assets_dir
from yfpo_core.saes.config import SAETrainConfig

SHIPPED_DIR = package_assets_dir() / "saes"
DEFAULT_SAES = {"smollm2-135m-instruct": "smollm2-135m-instruct-L15-mlp-w2048",
                "toy-arith": "toy-arith-L1-mlp-w1024"}
META_FILE = "yfpo_sae.json"


class SAEError(YfpoError):
    """An SAE cannot be loaded or does not fit the model."""


@dataclass
class LoadedSAE:
    """An SAE with the names the workbench uses for it."""

    sae: Any  # sae_lens.SAE
    sae_id: str  # short id used in neuron sets and unit labels
    hook_name: str  # the model hook it reads and writes
    source: str  # folder path or "<release>/<sae_id>"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def layer(self) -> int:
        return int(self.hook_name.split(".")[1])

    def neuron_set_entry(self) -> dict[str, Any]:
        return {"hook_name": self.hook_name, "d_sae": self.d_sae, "path_or_release": self.source}


def default_sae_dir(model_name: str) -> Path:
    """Where the shipped SAE of ``model_name`` lives (it may not exist); KeyError for models without one."""
    return SHIPPED_DIR / DEFAULT_SAES[model_name]


def default_sae_command(model_name: str) -> str:
    """The `yfpo sae train` command that makes the default SAE of ``model_name`` (names follow
    ``<model>-L<layer>-mlp-w<width>``)."""
    name = DEFAULT_SAES[model_name]
    layer, width = name.rsplit("-L", 1)[1].split("-mlp-w")
    return (f"yfpo sae train --model {model_name} --hook blocks.{layer}.mlp.hook_post --width {width} "
            f"--out {default_sae_dir(model_name)}")


def _hook_name_of(sae: Any) -> str:
    return sae.cfg.metadata.hook_name


def resolve_sae_ref(ref: str, model: LoadedModel | None = None) -> str:
    """The one reading of an SAE reference, shared by the CLI, the app and the trainer: ``default`` (the
    shipped SAE of ``model``) becomes its folder, an existing folder its absolute path (so that a set records
    a folder that loads from anywhere, and a cache keys one folder once), ``<release>/<sae_id>`` stays as
    it is. Nothing is loaded.

    Raises:
        SAEError: No shipped SAE (or not on disk yet), a path that is not a folder, or a text that is none
            of the three forms.
    """
    ref = ref.strip()
    if ref == "default":
        if model is None or model.name not in DEFAULT_SAES:
            raise SAEError(f"no shipped SAE for {model.name if model else 'this model'}: train one with "
                           "`yfpo sae train --model ... --hook blocks.L.mlp.hook_post --out DIR` and give DIR")
        folder = default_sae_dir(model.name)
        if not folder.is_dir():
            raise SAEError(f"the default SAE of {model.name} is not on disk ({folder}); make it with: "
                           f"{default_sae_command(model.name)}")
        return str(folder)
    path = Path(ref).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise SAEError(f"{path} is a file, not an SAE folder: give the folder written by `yfpo sae train`")
    if ref.startswith(("/", ".", "~")):  # plainly a path: not a <release>/<sae_id>
        raise SAEError(f"There is no folder {path}: give the folder of an SAE written by `yfpo sae train`")
    if "/" in ref:
        return ref
    raise SAEError(f"{ref!r} is neither a folder, `default`, nor <release>/<sae_id>")


def load_sae(ref: str, model: LoadedModel | None = None, device: str = "cpu") -> LoadedSAE:
    """Load an SAE by folder, ``default`` (the shipped SAE of ``model``) or ``<release>/<sae_id>`` (the
    reference read by :func:`resolve_sae_ref`).

    Raises:
        SAEError: Unknown reference, unreachable hub, or an SAE whose hook or width does not fit ``model``.
    """
    from sae_lens import SAE

    ref = resolve_sae_ref(ref, model)
    path = Path(ref)
    if path.is_dir():
        if not (path / "cfg.json").exists():
            raise SAEError(f"{path} is not an SAE folder (no cfg.json): point at a folder written by "
                           "`yfpo sae train` or sae-lens's save_model")
        try:
            sae = SAE.load_from_disk(str(path), device=device, dtype="float32")
            meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).exists() else {}
        except Exception as exc:  # noqa: BLE001 - safetensors' SafetensorError is none of the usual types
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise SAEError(f"the SAE folder {path} is damaged ({reason}); retrain it with "
                           "`yfpo sae train` or restore cfg.json and the weights file") from None
        loaded = LoadedSAE(sae, path.name, _hook_name_of(sae), str(path), meta)
    else:
        release, _, sae_id = ref.partition("/")
        try:
            sae = SAE.from_pretrained(release, sae_id, device=device)
        except (OSError, ValueError, KeyError) as exc:
            raise SAEError(f"cannot load the released SAE {release!r} / {sae_id!r} ({type(exc).__name__}): the "
                           "Hugging Face hub may be unreachable or the id unknown. Offline, use `default` or a "
                           "local folder from `yfpo sae train`.") from None
        loaded = LoadedSAE(sae, f"{release}:{sae_id}".replace("/", "-"), _hook_name_of(sae), ref)
    with warnings.catch_warnings():
        # sae-lens 6.x prefers HookedSAETransformer.add_sae; we splice with our own hook (our models stay plain
        # HookedTransformers, which deep-copy safely for training) and need the SAE's own error term.
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded.sae.use_error_term = True
    loaded.sae.eval()
    if model is not None:
        check_fits(loaded, model)
    return loaded


def check_fits(loaded: LoadedSAE, model: LoadedModel) -> None:
    hook = loaded.hook_name
    if hook not in model.model.hook_dict:
        raise SAEError(f"SAE {loaded.sae_id} reads {hook}, which {model.name} does not have")
    width = model.model.cfg.d_mlp if hook.endswith("mlp.hook_post") else model.model.cfg.d_model
    if int(loaded.sae.cfg.d_in) != int(width):
        raise SAEError(f"SAE {loaded.sae_id} expects d_in={loaded.sae.cfg.d_in} at {hook}, but {model.name} has "
                       f"{width}: it was trained for another model")


class SAESpace(UnitSpace):
    """The features of one SAE as units (one row of width ``d_sae``), read with the SAE spliced in."""

    def __init__(self, loaded: LoadedSAE) -> None:
        super().__init__("sae_feature", (f"{loaded.hook_name}.hook_sae_acts_post",), loaded.d_sae, loaded.sae_id)
        object.__setattr__(self, "loaded", loaded)

    @property
    def unit_hook_names(self) -> tuple[str, ...]:
        return (self.loaded.hook_name,)

    @contextmanager
    def reading(self, model: Any, fn: ReadFn) -> Iterator[None]:
        sae = self.loaded.sae
        row = self.hook_names[0]

        def splice(x: torch.Tensor, hook: Any) -> torch.Tensor:
            return sae(x)  # reconstruction + error term: the same value, features in the graph

        def features(f: torch.Tensor, hook: Any) -> torch.Tensor:
            out = fn(row, f)
            return f if out is None else out

        with frozen_parameters(sae), model.hooks(fwd_hooks=[(self.loaded.hook_name, splice)]), \
                sae.hooks(fwd_hooks=[("hook_sae_acts_post", features)]):
            yield

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "sae_source": self.loaded.source}


# -- training ---------------------------------------------------------------------------------------
def training_texts(model: LoadedModel, math_fraction: float = 0.8, seed: int = 0) -> list[str]:
    """Math solutions (GSM-Symbolic variants, or toy problems for the toy model) in the
    model's prompt format, mixed with non-math text so that features are not all math."""
    from yfpo_core.attribution import default_contrast_texts
    from yfpo_core.problems import load_problems

    fmt = model.prompt_format
    if model.native_problems == "toy":
        problems = load_problems("toy", n=2000, seed=seed)
    else:  # variants only: the 100 GSM8K originals stay held out for `yfpo sae eval`
        problems = load_problems("gsm-symbolic", seed=seed)
    math = [fmt.prompt(p.question) + fmt.response(p.solution) + fmt.end_of_response for p in problems]
    n_other = max(1, round(len(math) * (1 - math_fraction) / max(math_fraction, 1e-6)))
    others = default_contrast_texts(model, n_other)
    texts = math + others
    random.Random(seed).shuffle(texts)
    return texts


def train_sae(config: SAETrainConfig, out_dir: Path, model: LoadedModel | None = None,
              resume_from: Path | None = None) -> LoadedSAE:
    """Train an SAE with sae-lens and save it in ``out_dir`` (sae-lens format + ``yfpo_sae.json``)."""
    from datasets import Dataset
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens import StandardTrainingSAEConfig

    from yfpo_core.models import load_model

    os.environ.setdefault("WANDB_MODE", "disabled")
    model = model or load_model(config.model)
    if config.hook not in model.model.hook_dict:
        raise SAEError(f"{model.name} has no hook {config.hook}")
    d_in = model.model.cfg.d_mlp if config.hook.endswith("mlp.hook_post") else model.model.cfg.d_model
    texts = training_texts(model, config.math_fraction, config.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=d_in, d_sae=config.width, l1_coefficient=config.l1),
        model_name=model.name, hook_name=config.hook, dataset_path="", is_dataset_tokenized=False,
        streaming=False, context_size=config.context_size, train_batch_size_tokens=config.batch_tokens,
        n_batches_in_buffer=config.buffer_batches, training_tokens=config.tokens, store_batch_size_prompts=8,
        lr=config.lr, device=str(model.model.cfg.device), seed=config.seed, prepend_bos=model.prepend_bos,
        logger=LoggingConfig(log_to_wandb=False), output_path=str(out_dir / "work" / "sae-lens-output"),
        checkpoint_path=str(out_dir / "work" / "checkpoints"), n_checkpoints=config.checkpoints,
        resume_from_checkpoint=str(resume_from) if resume_from else None, n_eval_batches=2,
        eval_batch_size_prompts=4, verbose=True)
    started = time.perf_counter()
    runner = LanguageModelSAETrainingRunner(runner_cfg, override_dataset=Dataset.from_dict({"text": texts}),
                                            override_model=model.model)
    sae = runner.run()
    seconds = time.perf_counter() - started
    final = out_dir  # the SAE files sit in out_dir itself; its name is the SAE's id
    if config.fp16:
        sae = sae.to(torch.float16)
    sae.save_model(final)
    work = out_dir / "work"
    for name in ("runner_cfg.json", "sparsity.safetensors"):
        if (work / "sae-lens-output" / name).exists():
            (final / name).write_bytes((work / "sae-lens-output" / name).read_bytes())
    shutil.rmtree(work, ignore_errors=True)  # checkpoints only serve an interrupted run
    loaded = load_sae(str(final), model)
    quality = sae_quality(model, loaded, held_out_texts(model))
    meta = {"model": model.name, "model_fingerprint": model.fingerprint, "config": asdict(config),
            "command": "yfpo sae train " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if sys.argv[1:3] == [
                "sae", "train"] else None,
            "train_seconds": round(seconds, 1), "tokens_per_second": round(config.tokens / seconds, 1),
            "n_texts": len(texts), "quality": quality}
    atomic_write_text(final / META_FILE, json.dumps(meta, indent=2))
    loaded.meta = meta
    return loaded


# -- quality ----------------------------------------------------------------------------------------
def held_out_texts(model: LoadedModel, n: int = 64, seed: int = 12345) -> list[str | tuple[str, str]]:
    """Texts the quality numbers are measured on: 4/5 math problems the SAE was not trained on, as
    (prompt, response) so that the loss counts the response (the part a chat model is asked to write;
    the toy model never learned to predict questions), and 1/5 non-math text scored whole (none for the toy
    model).

    The embedded model's SAEs train on GSM-Symbolic variants, so the 100 GSM8K originals are held out;
    the toy model's are drawn with their own seed (12345).
    """
    from yfpo_core.attribution import default_contrast_texts
    from yfpo_core.problems import load_problems

    fmt = model.prompt_format
    toy = model.native_problems == "toy"
    # The toy model only ever learned to write answers: text it never had to predict says nothing about it.
    n_math = n if toy else max(1, n * 4 // 5)
    source = "toy" if toy else "gsm8k-test-100"
    problems = load_problems(source, limit=n_math, seed=seed)
    math: list[str | tuple[str, str]] = [(fmt.prompt(p.question), fmt.response(p.solution) + fmt.end_of_response)
                                         for p in problems]
    return math + (list(default_contrast_texts(model, n - len(math))) if n > len(math) else [])


@torch.no_grad()
def sae_quality(model: LoadedModel, loaded: LoadedSAE, texts: Sequence[str | tuple[str, str]],
                max_tokens: int = 256) -> dict[str, float]:
    """L0, explained variance and next-token loss with the SAE's reconstruction spliced in (no error term),
    against the clean loss and the loss with the activation zeroed (for the fraction of loss recovered).

    A text given as ``(prompt, continuation)`` has its loss counted on the continuation only; L0 and
    explained variance always use every position.
    """
    sae, hook = loaded.sae, loaded.hook_name
    l0s, residual_var, total_var = [], 0.0, 0.0
    losses = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    n_tokens = 0

    def splice(x, hook):
        return sae.decode(sae.encode(x))

    for text in texts:
        limit = min(max_tokens, model.model.cfg.n_ctx)
        if isinstance(text, tuple):
            prompt_ids = model.encode_prompt(text[0])
            all_ids, first = prompt_ids + model.encode(text[1]), len(prompt_ids) - 1
        else:
            all_ids, first = model.encode_prompt(text), 0
        ids = torch.tensor([all_ids[:limit]], device=model.model.cfg.device)
        if ids.shape[1] - 1 <= first:
            continue
        _, cache = model.model.run_with_cache(ids, names_filter=lambda n: n == hook, return_type=None)
        x = cache[hook][0]
        f = sae.encode(x)
        recon = sae.decode(f)
        l0s.append((f > 0).float().sum(-1).mean().item())
        residual_var += ((x - recon) ** 2).sum().item()
        total_var += ((x - x.mean(0)) ** 2).sum().item()
        for name, hooks in (("clean", []), ("spliced", [(hook, splice)]),
                            ("zero", [(hook, lambda x, hook: torch.zeros_like(x))])):
            with model.model.hooks(fwd_hooks=hooks):
                loss = model.model(ids, return_type="loss", loss_per_token=True)  # [1, pos - 1]
            losses[name] += loss[:, first:].sum().item()
        n_tokens += ids.shape[1] - 1 - first
    clean, spliced, zero = (losses[k] / max(n_tokens, 1) for k in ("clean", "spliced", "zero"))
    return {"l0": sum(l0s) / max(len(l0s), 1), "explained_variance": 1 - residual_var / max(total_var, 1e-12),
            "loss_clean": clean, "loss_spliced": spliced, "loss_delta": spliced - clean, "loss_zero_ablated": zero,
            "loss_recovered": (zero - spliced) / (zero - clean) if zero != clean else float("nan"),
            "n_texts": len(l0s), "n_tokens": n_tokens}


def feature_logit_effect(model: LoadedModel, loaded: LoadedSAE, index: int, k: int = 10
                         ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Tokens the feature's decoder direction promotes and suppresses most (direct path through W_out for
    MLP-neuron SAEs, then the unembedding)."""
    with torch.no_grad():
        direction = loaded.sae.W_dec[index].float()
        if loaded.hook_name.endswith("mlp.hook_post"):
            direction = direction @ model.model.blocks[loaded.layer].mlp.W_out
        effect = (direction @ model.model.W_U).float().cpu()
        effect = effect - effect.mean()
    top, bottom = torch.topk(effect, k), torch.topk(-effect, k)
    return ([(model.decode([int(i)]), float(v)) for v, i in zip(top.values, top.indices, strict=True)],
            [(model.decode([int(i)]), float(-v)) for v, i in zip(bottom.values, bottom.indices, strict=True)])
