"""Data-parallel locate, ablate, eval, the activation index and the faithfulness curves: 2 CPU processes
(torchrun, gloo) on the toy model give the 1-process result, one file is written by rank 0, and a failure on
one rank stops both with one message.

Kept fast like the 2-process training test: the shipped toy model, a handful of toy problems, one thread per
process. The 1-process references run in this process (``main([...])``), the 2-process runs under
``python -m torch.distributed.run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yfpo_core.cli import main
from yfpo_core.distributed import Distributed, RankFailure, resolve_device

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["--model", "toy-arith", "--problems", "toy", "--limit", "7", "--seed", "3"]


def torchrun(*args: str, launcher: str = "torchrun", timeout: int = 300, script: Path | None = None
             ) -> subprocess.CompletedProcess:
    """``yfpo <args>`` in 2 processes, launched by torchrun or by ``accelerate launch`` (its multi-process
    launcher, which works on CPU too: the processes then talk over gloo); ``script`` runs instead of
    ``-m yfpo_core`` (a test's own entry point that breaks something on one rank)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    if launcher == "torchrun":
        start = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    else:
        start = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
                 "0"]
    entry = [str(script)] if script is not None else ["-m", "yfpo_core"]
    return subprocess.run([*start, *entry, *args], env=env, capture_output=True, text=True, timeout=timeout)


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# -- the module itself, in one process -------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 5, 8])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_item_once_and_gather_restores_the_order(n, world):
    shards = [Distributed(rank=r, world=world).shard(n) for r in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(n))
    assert all(len(s) - len(shards[-1]) in (0, 1) for s in shards)  # balanced: sizes differ by at most one
    assert shards == [Distributed(rank=r, world=world).shard(n) for r in range(world)]  # deterministic
    one = Distributed()
    assert one.gather([2, 0, 1], ["c", "a", "b"]) == ["a", "b", "c"]
    assert one.map(list("xyz"), lambda mine: [c.upper() for c in mine]) == ["X", "Y", "Z"]


def test_items_of_unequal_cost_are_dealt_costliest_first_to_the_least_loaded_process():
    costs = [5, 4, 3, 3, 2, 1]  # by hand (ties to the higher rank): 5 -> r1, 4 -> r0, 3 -> r0, 3 -> r1, 2 -> r0, 1 -> r1
    assert [Distributed(rank=r, world=2).shard_by_cost(costs) for r in range(2)] == [[1, 2, 4], [0, 3, 5]]
    assert Distributed().shard_by_cost(costs) == list(range(6))
    for world in (2, 3):
        for n in (0, 1, 7):
            costs = [(7 * i) % 5 + 1 for i in range(n)]
            shards = [Distributed(rank=r, world=world).shard_by_cost(costs) for r in range(world)]
            assert sorted(i for shard in shards for i in shard) == list(range(n))
            loads = [sum(costs[i] for i in shard) for shard in shards]
            assert max(loads) - min(loads) <= max(costs, default=0)  # greedy: within one item of even


def test_cuda_means_each_process_its_own_gpu():
    assert resolve_device("cuda", local_rank=3, world=4) == "cuda:3"
    assert resolve_device("cuda", local_rank=0, world=1) == "cuda"
    assert resolve_device("cpu", local_rank=1, world=2) == "cpu"


@pytest.mark.parametrize("command", [
    ["locate", "--out", "x.json"], ["ablate", "--set", "s.json"], ["inspect", "--unit", "0:1"], ["eval"],
    ["pairs", "--out", "p.jsonl"], ["train"], ["experiment", "--set", "s.json"], ["sae", "train", "--out", "d"],
    ["sae", "eval"], ["toy", "train"], ["index", "build"], ["faithfulness", "--out", "f"]],
    ids=lambda c: " ".join(c[:2]) if c[0] in ("sae", "toy", "index") else c[0])
def test_every_command_that_runs_a_model_takes_device_cuda(command):
    from yfpo_core.cli import build_parser

    args = build_parser().parse_args([*command, "--device", "cuda"])
    assert getattr(args, "device", None) == "cuda"


def test_a_rank_failure_is_printed_by_rank_0_only(capsys, monkeypatch):
    """The CLI's error policy: a RankFailure marked quiet (ranks > 0) prints nothing but still exits 2."""
    from yfpo_core.cli import eval_command

    def fail(quiet: bool):
        def handler(args):
            raise RankFailure("rank 1 of 2 processes failed: boom; no output was written", quiet=quiet)
        return handler

    for quiet, expected in ((True, ""), (False, "yfpo: error: rank 1 of 2 processes failed: boom; no output was written\n")):
        monkeypatch.setattr(eval_command, "cmd_eval", fail(quiet))
        assert main(["eval", "--model", "toy-arith", "--problems", "toy"]) == 2
        assert capsys.readouterr().err == expected


# -- two processes against one ---------------------------------------------------------------------------

def test_two_process_locate_ablate_and_eval_equal_one_process(tmp_path):
    # locate: the same top-k units, scores within 1e-5 relative; batches differ (2 per pass, other shards)
    assert main(["locate", *MODEL, "--top-k", "12", "--batch-size", "2", "--out", str(tmp_path / "one.json")]) == 0
    out = torchrun("locate", *MODEL, "--top-k", "12", "--batch-size", "2", "--out", str(tmp_path / "two.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert [(u["hook_name"], u["index"]) for u in two["units"]] == [(u["hook_name"], u["index"]) for u in one["units"]]
    assert [u["score"] for u in two["units"]] == pytest.approx([u["score"] for u in one["units"]], rel=1e-5)
    assert one["selection"]["processes"] == 1 and two["selection"]["processes"] == 2
    from yfpo_core.attribution import AttributionResult

    r1, r2 = AttributionResult.load(tmp_path / "one.scores"), AttributionResult.load(tmp_path / "two.scores")
    assert r2.problem_ids == r1.problem_ids and len(r1.problem_ids) == 7
    assert relative_gap(r2.per_problem, r1.per_problem) < 1e-5 and relative_gap(r2.scores, r1.scores) < 1e-5
    assert set(r2.token_scores) == set(r1.token_scores) == set(r1.problem_ids)
    assert out.stdout.count("wrote ") == 1  # rank 0 alone prints and writes

    # a method whose reduce is not a mean: the non-math texts are sharded too, the contrast made on rank 0
    contrast = ["locate", *MODEL, "--method", "contrast_math_nonmath", "--top-k", "12"]
    assert main([*contrast, "--out", str(tmp_path / "c1.json")]) == 0
    out = torchrun(*contrast, "--out", str(tmp_path / "c2.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    c1, c2 = AttributionResult.load(tmp_path / "c1.scores"), AttributionResult.load(tmp_path / "c2.scores")
    assert c2.params["n_contrast_texts"] == c1.params["n_contrast_texts"] == 7 and c2.params["processes"] == 2
    assert relative_gap(c2.scores, c1.scores) < 1e-5 and [s.unit for s in c2.top(12)] == [s.unit for s in c1.top(12)]

    # ablate (mean ablation: the means are summed over both processes' problems)
    ablate = ["ablate", "--set", str(tmp_path / "one.json"), "--random", "3", "--kind", "mean"]
    assert main([*ablate, "--out", str(tmp_path / "ab1.json")]) == 0
    out = torchrun(*ablate, "--out", str(tmp_path / "ab2.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    a1, a2 = (json.loads((tmp_path / f"ab{n}.json").read_text()) for n in (1, 2))
    assert a1["processes"] == 1 and a2["processes"] == 2
    for part in ("baseline", "tested"):
        assert a2[part] == pytest.approx(a1[part], rel=1e-5, abs=1e-6)
    assert len(a2["random"]) == len(a1["random"]) == 3
    for r2, r1 in zip(a2["random"], a1["random"], strict=True):  # the same random sets, drawn from --seed
        assert r2 == pytest.approx(r1, rel=1e-5, abs=1e-6)
    assert a1["tested"] != a1["baseline"]  # the ablation did something to compare

    # eval, both metrics (exact under accelerate launch): the same rows in problem order
    for metric, suffix in (("ranking", "csv"), ("exact", "jsonl")):
        args = ["eval", *MODEL, "--metric", metric, "--max-new-tokens", "24", "--quiet"]
        assert main([*args, "--out", str(tmp_path / f"{metric}1.{suffix}")]) == 0
        launcher = "torchrun" if metric == "ranking" else "accelerate"
        out = torchrun(*args, "--out", str(tmp_path / f"{metric}2.{suffix}"), launcher=launcher)
        assert out.returncode == 0, out.stderr[-3000:]
        s1, s2 = (json.loads((tmp_path / f"{metric}{n}.summary.json").read_text()) for n in (1, 2))
        assert s1["processes"] == 1 and s2["processes"] == 2 and s2["n_problems"] == 7
        metrics = [k for k, v in s1.items() if isinstance(v, float) and k != "seconds"]
        assert "n_problems" in metrics and ("ranking_accuracy" in metrics or "exact_match" in metrics)
        assert {k: s2[k] for k in metrics} == pytest.approx({k: s1[k] for k in metrics}, rel=1e-5)
        assert all(s2[k] == s1[k] for k, v in s1.items() if isinstance(v, str))  # model, problems, metric
        import pandas as pd

        read = pd.read_csv if suffix == "csv" else (lambda p: pd.read_json(p, lines=True))
        f1, f2 = read(tmp_path / f"{metric}1.{suffix}"), read(tmp_path / f"{metric}2.{suffix}")
        assert list(f2["id"]) == list(f1["id"]) and list(f2["correct"]) == list(f1["correct"])
        if metric == "ranking":
            assert list(f2["gold_logprob"]) == pytest.approx(list(f1["gold_logprob"]), rel=1e-5)
        else:
            assert list(f2["output"]) == list(f1["output"])


def test_a_problem_that_fails_on_rank_1_stops_both_with_one_message_and_no_file(tmp_path):
    """Problem 1 (the costliest, dealt to rank 1) is longer than the toy model's 256-token context: rank 1
    fails, rank 0 finishes its share and must not wait forever nor write anything."""
    fine = {"question": "Tom has 3 apples and gets 4 more. How many apples?", "answer": "7",
            "solution": "3+4=7\n#### 7"}
    long = dict(fine, question="Tom has 3 apples. " * 30 + "How many apples?")
    problems = tmp_path / "problems.jsonl"
    problems.write_text("\n".join(json.dumps({**p, "id": f"p{i}"}) for i, p in enumerate([fine, long, fine, fine])))
    out = torchrun("locate", "--model", "toy-arith", "--problems", str(problems), "--out", str(tmp_path / "set.json"))
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("yfpo: error:")]
    assert len(errors) == 1, out.stderr[-3000:]
    assert "rank 1 of 2 processes failed" in errors[0] and "problem p1 needs" in errors[0] and "no output" in errors[0]
    assert "Traceback" not in out.stderr.split("yfpo: error:")[0]  # a user error: no traceback from either rank
    assert sorted(p.name for p in tmp_path.iterdir()) == ["problems.jsonl"]  # no set, no scores, no temp files

    # the same problem in one process: the same words, from the same check
    assert main(["locate", "--model", "toy-arith", "--problems", str(problems), "--out", str(tmp_path / "s.json")]) == 2
    assert not (tmp_path / "s.json").exists()


def test_a_bug_on_rank_1_stops_both_with_its_traceback_and_one_message(tmp_path):
    """A failure that is not the user's (here: an answer continuation longer than the whole context, which
    the ranking code refuses with a ValueError) keeps its traceback, from the rank where it happened, and
    still ends both ranks with one error line and no file."""
    fine = {"question": "Tom has 3 apples and gets 4 more. How many apples?", "answer": "7",
            "solution": "3+4=7\n#### 7"}
    odd = dict(fine, solution="7 apples " + "and more apples " * 20 + "\n#### 7")
    problems = tmp_path / "problems.jsonl"
    problems.write_text("\n".join(json.dumps({**p, "id": f"p{i}"}) for i, p in enumerate([fine, odd, fine])))
    out = torchrun("eval", "--model", "toy-arith", "--problems", str(problems), "--out", str(tmp_path / "rows.csv"))
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("yfpo: error:")]
    assert len(errors) == 1, out.stderr[-3000:]
    assert "rank 1 of 2 processes failed: ValueError" in errors[0] and "traceback is printed above" in errors[0]
    assert "Traceback" in out.stderr.split("yfpo: error:")[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["problems.jsonl"]


def error_lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.startswith("yfpo: error:")]


# -- the activation index and the faithfulness curves ----------------------------------------------------

OUT_OF_MEMORY_ON_RANK_1 = """
import os, sys
import torch
import yfpo_core.attribution.methods as methods

real, calls = methods.activations, []


def activations(*args, **kwargs):  # rank 1 runs out of memory on its second text
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 2:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
    return real(*args, **kwargs)


methods.activations = activations
from yfpo_core.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _index_corpus(path: Path) -> Path:
    """Math and non-math toy texts, interleaved, of different lengths (the shares hold different tokens)."""
    from yfpo_core.problems.synthetic import generate_toy_nonmath, generate_toy_problems

    math = [f"Q: {p.question}\nA: {p.solution}" for p in generate_toy_problems(6, seed=1)]
    other = generate_toy_nonmath(5, seed=1)
    rows = [{"id": f"t{i}", "text": text, "math": i % 2 == 0}
            for i, text in enumerate(t for pair in zip(math, other + [""]) for t in pair if t)]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def _assert_same_index(two: Path, one: Path) -> None:
    """Counts, top-k and sampled tokens, their values and windows identical; sums within 1e-5 relative."""
    from safetensors.torch import load_file

    t1, t2 = load_file(str(one / "index.safetensors")), load_file(str(two / "index.safetensors"))
    assert t1.keys() == t2.keys() and {"top_tokens", "sample_tokens", "hist", "sum"} <= set(t1)
    for name in t1:
        if t1[name].dtype == torch.float64:
            assert relative_gap(t2[name], t1[name]) < 1e-5, name
        else:
            torch.testing.assert_close(t2[name], t1[name], rtol=0, atol=0, equal_nan=True, msg=name)
    m1, m2 = (json.loads((folder / "index.json").read_text()) for folder in (one, two))
    assert m1["processes"] == 1 and m2["processes"] == 2
    assert {k: v for k, v in m2.items() if "second" not in k and k != "processes"} == \
        {k: v for k, v in m1.items() if "second" not in k and k != "processes"}  # texts, offsets, settings
    assert sorted(p.name for p in two.iterdir()) == ["index.json", "index.safetensors"]  # no checkpoint left


def test_two_process_index_build_equals_one_process_and_resumes_after_a_failed_rank(tmp_path):
    corpus = _index_corpus(tmp_path / "corpus.jsonl")
    build = ["index", "build", "--model", "toy-arith", "--corpus", str(corpus)]
    assert main([*build, "--folder", str(tmp_path / "one")]) == 0
    out = torchrun(*build, "--folder", str(tmp_path / "two"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("index of ") == 1 and "on 2 processes" in out.stdout  # rank 0 alone reports
    _assert_same_index(tmp_path / "two", tmp_path / "one")
    from safetensors.torch import load_file

    counts = load_file(str(tmp_path / "one" / "index.safetensors"))
    assert int(counts["math_count"][0]) > 0 and int(counts["other_count"][0]) > 0  # both sums are compared

    # rank 1 fails on its second text: both stop, one message, no index; each share keeps its checkpoint
    script = tmp_path / "entry" / "oom_on_rank_1.py"
    script.parent.mkdir()
    script.write_text(OUT_OF_MEMORY_ON_RANK_1)
    failed = tmp_path / "failed"
    out = torchrun(*build, "--folder", str(failed), script=script)
    assert out.returncode != 0
    errors = error_lines(out)
    assert len(errors) == 1, out.stderr[-3000:]
    assert "rank 1 of 2 processes failed: OutOfMemoryError" in errors[0] and "no output was written" in errors[0]
    assert not (failed / "index.json").exists() and not (failed / "index.safetensors").exists()
    states = {p.name: json.loads(p.read_text())["done"] for p in failed.glob("build_state.rank*.json")}
    assert states == {"build_state.rank0-of-2.json": 6, "build_state.rank1-of-2.json": 1}  # 11 texts: 6 + 5

    # started again with 2 processes it resumes both shares and ends where an uninterrupted build does
    out = torchrun(*build, "--folder", str(failed))
    assert out.returncode == 0, out.stderr[-3000:]
    _assert_same_index(failed, tmp_path / "one")


def test_two_process_faithfulness_equals_one_process(tmp_path):
    args = ["faithfulness", "--model", "toy-arith", "--problems", "toy", "--locate", "3", "--heldout", "5",
            "--methods", "attnlrp,activation", "--ks", "1,5,20", "--random", "2", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    out = torchrun(*args, "--out", str(tmp_path / "two"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("wrote ") == 1 and "(2 processes)" in out.stdout
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["processes"] == 1 and two["processes"] == 2
    assert two["settings"] == one["settings"] and len(one["settings"]["heldout_ids"]) == 5
    assert [(p["method"], p["k"], p["units"], p["random_units"]) for p in two["points"]] == \
        [(p["method"], p["k"], p["units"], p["random_units"]) for p in one["points"]]  # the same sets zeroed
    assert len(one["rows"]) == len(two["rows"]) == 2 * 4
    for r2, r1 in zip(two["rows"] + two["overlap"], one["rows"] + one["overlap"], strict=True):
        numbers = [k for k, v in r1.items() if isinstance(v, float)]
        assert {k: v for k, v in r2.items() if k not in numbers} == {k: v for k, v in r1.items() if k not in numbers}
        assert [r2[k] for k in numbers] == pytest.approx([r1[k] for k in numbers], rel=1e-5, abs=1e-9, nan_ok=True)
    assert one["baseline"] != one["points"][-1]["tested"]  # zeroing did something to compare
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
    assert (tmp_path / "two.html").exists()


def test_a_locate_problem_that_fails_on_rank_1_leaves_no_faithfulness_report(tmp_path):
    fine = {"question": "Tom has 3 apples and gets 4 more. How many apples?", "answer": "7",
            "solution": "3+4=7\n#### 7"}
    long = dict(fine, question="Tom has 3 apples. " * 30 + "How many apples?")
    problems = tmp_path / "problems.jsonl"
    problems.write_text("\n".join(json.dumps({**p, "id": f"p{i}"}) for i, p in enumerate([fine, long, fine, fine])))
    out = torchrun("faithfulness", "--model", "toy-arith", "--problems", str(problems), "--locate", "2",
                   "--heldout", "2", "--methods", "activation", "--ks", "1", "--out", str(tmp_path / "report"))
    assert out.returncode != 0
    errors = error_lines(out)
    assert len(errors) == 1, out.stderr[-3000:]
    assert "rank 1 of 2 processes failed" in errors[0] and "problem p1 needs" in errors[0]
    assert "Traceback" not in out.stderr.split("yfpo: error:")[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["problems.jsonl"]  # no .json, .csv, .html


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_locate_ablate_and_eval_run_on_cuda(tmp_path):
    args = ["--model", "toy-arith", "--problems", "toy", "--limit", "4", "--device", "cuda"]
    assert main(["locate", *args, "--top-k", "5", "--out", str(tmp_path / "set.json")]) == 0
    assert main(["ablate", "--set", str(tmp_path / "set.json"), "--random", "2", "--device", "cuda"]) == 0
    assert main(["eval", *args, "--metric", "ranking", "--quiet"]) == 0
    assert main(["eval", *args, "--metric", "exact", "--max-new-tokens", "16", "--quiet"]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_index_build_and_faithfulness_run_on_cuda(tmp_path):
    assert main(["index", "build", "--model", "toy-arith", "--limit", "6", "--device", "cuda",
                 "--folder", str(tmp_path / "index")]) == 0
    assert json.loads((tmp_path / "index" / "index.json").read_text())["n_texts"] == 6
    assert main(["faithfulness", "--model", "toy-arith", "--problems", "toy", "--locate", "2", "--heldout", "3",
                 "--methods", "attnlrp,activation", "--ks", "1,5", "--random", "2", "--device", "cuda",
                 "--out", str(tmp_path / "faith")]) == 0
    assert json.loads((tmp_path / "faith.json").read_text())["processes"] == 1
