"""The shipped GSM-Symbolic variants: what the project's own command makes, read like a fresh generation.

A first training run reads its problems (seed 0) and its held-out problems (seed 1) from
``yfpo_core/assets/gsm-symbolic`` instead of generating 100 templates for minutes.
"""

from __future__ import annotations

import gzip
import json
from importlib import metadata

import pytest

from yfpo_core.problems import gsm, gsm_symbolic, load_problems
from yfpo_core.problems.gsm_symbolic import (
    DEFAULT_N_PER_TEMPLATE,
    DEFAULT_TIME_LIMIT_S,
    SHIPPED_SEEDS,
    generate_template_variants,
    load_gsm_symbolic,
)


def shipped_file(seed: int):
    name = (f"v{metadata.version(gsm.PACKAGE_NAME)}-f{gsm_symbolic.CACHE_FORMAT}-seed{seed}-n{DEFAULT_N_PER_TEMPLATE}"
            f"-limit{DEFAULT_TIME_LIMIT_S:g}s-raw.jsonl.gz")
    return gsm_symbolic.shipped_dir() / name


def read(seed: int) -> tuple[dict, dict[int, list]]:
    lines = gzip.decompress(shipped_file(seed).read_bytes()).decode().splitlines()
    return json.loads(lines[0]), {row["template"]: row["variants"] for row in map(json.loads, lines[1:])}


def no_generation(*args, **kwargs):
    raise AssertionError("the shipped file should have answered")


@pytest.mark.parametrize("seed", SHIPPED_SEEDS)
def test_a_file_ships_for_the_installed_package_and_accounts_for_every_template(seed):
    assert shipped_file(seed).exists(), ("regenerate with: yfpo problems --source gsm-symbolic --seed "
                                         f"{seed} --ship (the package version or the defaults changed)")
    header, raw = read(seed)
    assert header["kind"] == gsm_symbolic.SHIPPED_KIND and header["seed"] == seed
    assert sorted([*raw, *header["timed_out"], *map(int, header["failed"])]) == list(range(100))
    assert len(raw) >= 75 and all(len(v) == DEFAULT_N_PER_TEMPLATE for v in raw.values())


@pytest.mark.parametrize("seed", SHIPPED_SEEDS)
def test_the_shipped_variants_are_what_the_generator_makes(seed):
    """Templates 0 and 1 (fast ones) generated again now, in this process, equal the shipped lines."""
    _, raw = read(seed)
    for template in (0, 1):
        assert generate_template_variants(template, n=DEFAULT_N_PER_TEMPLATE, seed=seed) == raw[template]


def test_a_default_setting_reads_the_shipped_file_without_generating(monkeypatch):
    """Training templates 0..19 of seed 0 from an empty cache: instant, the problems of the raw variants (in
    template order, ids and meta as a generation writes them), the shipped time-outs among them reported."""
    monkeypatch.setattr(gsm_symbolic, "generate_variants", no_generation)
    header, raw = read(0)
    result = load_gsm_symbolic(seed=0, templates=list(range(20)))
    kept = [t for t in range(20) if t in raw]
    assert result.timed_out == tuple(t for t in range(20) if t in header["timed_out"])
    assert [p.meta["template"] for p in result.problems] == sorted(p.meta["template"] for p in result.problems)
    assert {p.meta["template"] for p in result.problems} == set(kept)
    first = result.problems[0]
    assert first.question == raw[0][0]["question"].strip() and first.id == f"gsm-symbolic/{raw[0][0]['gsm8k_index']:04d}-s0-k0"
    assert load_problems("gsm-symbolic", seed=1, limit=5)[0].id.endswith("-s1-k0")


def test_other_settings_and_a_damaged_file_generate(monkeypatch, tmp_path):
    """Seed 5 ships nothing; a damaged shipped file is ignored: both go to the generator."""
    asked = []

    def fake_generate(templates, **kwargs):
        asked.append((list(templates), kwargs["seed"]))
        return gsm_symbolic.SymbolicVariants(problems=[], n_templates=len(templates))

    monkeypatch.setattr(gsm_symbolic, "generate_variants", fake_generate)
    load_gsm_symbolic(seed=5, templates=[0, 1])
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / shipped_file(0).name).write_bytes(b"not gzip")
    monkeypatch.setattr(gsm_symbolic, "shipped_dir", lambda: folder)
    load_gsm_symbolic(seed=0, templates=[2])
    assert asked == [([0, 1], 5), ([2], 0)]
