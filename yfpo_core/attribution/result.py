"""The outcome of an attribution run: scores with aligned unit names, per problem and per token, savable.

Saved as two files side by side: ``<name>.safetensors`` (tensors) and ``<name>.json`` (everything else:
method, target, unit space, problem ids, model name and fingerprint, time, parameters). Loading never
unpickles anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

from yfpo_core.atomic import atomic_write
from yfpo_core.units.space import UnitSpace
from yfpo_core.errors import YfpoError
from yfpo_core.units.unit import Unit

RESULT_FORMAT = "yfpo-attribution"
RESULT_VERSION = 1


@dataclass(frozen=True)
class UnitScore:
    unit: Unit
    score: float
    rank: int


@dataclass
class AttributionResult:
    """Scores of every unit of a :class:`UnitSpace` over a problem set.

    Attributes:
        scores: Mean over problems of each unit's per-problem score, ``[rows, width]``.
        per_problem: Each problem's score, ``[n_problems, rows, width]``.
        problem_ids: Row labels of ``per_problem``.
        space: Which units the columns and rows are.
        method, target: How the scores were made.
        model_name, model_fingerprint: Which weights.
        token_scores: Optional per-token maps ``[pos, rows, width]`` by problem id (kept when small;
            otherwise :func:`yfpo_core.attribution.token_scores` recomputes one problem on demand).
        tokens: The token strings of each kept map, for display.
        params: Method parameters and run statistics (time, relevance budget, ...).
    """

    scores: Float[torch.Tensor, "rows width"]
    per_problem: Float[torch.Tensor, "problems rows width"]
    problem_ids: list[str]
    space: UnitSpace
    method: str
    target: str
    model_name: str
    model_fingerprint: str
    created: str
    params: dict[str, Any] = field(default_factory=dict)
    token_scores: dict[str, torch.Tensor] = field(default_factory=dict)
    tokens: dict[str, list[str]] = field(default_factory=dict)

    def top(self, k: int = 20, by: str = "value", layers: Sequence[int] | None = None) -> list[UnitScore]:
        """The ``k`` best units: by signed ``value`` (largest first), by ``abs`` value, or most ``negative``;
        only units in ``layers`` when given (e.g. the layers a fine-tune will train)."""
        flat = self.scores.flatten()
        key = {"value": flat, "abs": flat.abs(), "negative": -flat}.get(by)
        if key is None:
            raise ValueError("by must be 'value', 'abs' or 'negative'")
        if layers is not None:
            wanted = set(layers)
            rows = [r for r in range(self.scores.shape[0]) if self.space.unit(r, 0).layer in wanted]
            if not rows:
                scored = sorted({self.space.unit(r, 0).layer for r in range(self.scores.shape[0])})
                raise ValueError(f"none of the layers {sorted(wanted)} was scored (scored layers: {scored})")
            allowed = torch.zeros_like(self.scores, dtype=torch.bool)
            allowed[rows] = True
            key = key.masked_fill(~allowed.flatten(), float("-inf"))
            k = min(k, int(allowed.sum()))
        k = min(k, flat.numel())
        order = torch.topk(key, k).indices.tolist()
        width = self.space.width
        return [UnitScore(self.space.unit(i // width, i % width), float(flat[i]), rank + 1)
                for rank, i in enumerate(order)]

    def score_of(self, unit: Unit) -> float:
        return float(self.scores[self.space.row_of(unit), unit.index])

    def to_frame(self, k: int = 100, by: str = "value"):
        import pandas as pd

        return pd.DataFrame([{"rank": s.rank, "unit": s.unit.label, "layer": s.unit.layer, "index": s.unit.index,
                              "score": s.score} for s in self.top(k, by)])

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` and ``<path>.json`` (each atomically); returns both paths."""
        from safetensors.torch import save_file

        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
        base.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"scores": self.scores.float().contiguous(), "per_problem": self.per_problem.float().contiguous()}
        kept = list(self.token_scores)
        for i, pid in enumerate(kept):
            tensors[f"tokens/{i}"] = self.token_scores[pid].half().contiguous()
        meta = {"format": RESULT_FORMAT, "version": RESULT_VERSION, "method": self.method, "target": self.target,
                "space": self.space.to_dict(), "problem_ids": self.problem_ids, "model_name": self.model_name,
                "model_fingerprint": self.model_fingerprint, "created": self.created, "params": self.params,
                "token_problem_ids": kept, "tokens": {pid: self.tokens.get(pid, []) for pid in kept}}
        tensor_path, meta_path = Path(f"{base}.safetensors"), Path(f"{base}.json")
        atomic_write(tensor_path, lambda tmp: save_file(tensors, tmp))
        atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
        return tensor_path, meta_path

    @classmethod
    def load(cls, path: str | Path) -> AttributionResult:
        from safetensors.torch import load_file

        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
        meta_path, tensor_path = Path(f"{base}.json"), Path(f"{base}.safetensors")
        try:
            meta = json.loads(meta_path.read_text())
            tensors = load_file(str(tensor_path))
        except (OSError, ValueError) as exc:
            raise YfpoError(f"cannot read the attribution result {base}(.json/.safetensors): {exc}. "
                            "Re-run `yfpo locate` to make it again.") from None
        if meta.get("format") != RESULT_FORMAT or meta.get("version") != RESULT_VERSION:
            raise YfpoError(f"{meta_path} is not a version-{RESULT_VERSION} attribution result.")
        space = UnitSpace(meta["space"]["kind"], tuple(meta["space"]["hook_names"]), meta["space"]["width"],
                          meta["space"].get("sae_id"))
        kept = meta.get("token_problem_ids", [])
        return cls(scores=tensors["scores"], per_problem=tensors["per_problem"], problem_ids=meta["problem_ids"],
                   space=space, method=meta["method"], target=meta["target"], model_name=meta["model_name"],
                   model_fingerprint=meta["model_fingerprint"], created=meta["created"], params=meta["params"],
                   token_scores={pid: tensors[f"tokens/{i}"].float() for i, pid in enumerate(kept)},
                   tokens={pid: meta["tokens"].get(pid, []) for pid in kept})
