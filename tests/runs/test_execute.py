"""One run synchronously in its folder (yfpo_core.runs.execute): its files, and a kill then resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import trainer_config as config
from yfpo_core.errors import YfpoError
from yfpo_core.runs import execute, latest_checkpoint, read_metrics, read_status, resume_run
from yfpo_core.runs.execute import STEP_DONE
from yfpo_core.training.pairs_io import load_pairs

TRL_METRICS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
               "logps/rejected", "yfpo/neuron_margin", "yfpo/aux_loss", "yfpo/act_chosen", "yfpo/act_rejected"]


def test_run_directory_metrics_and_checkpoints(setup):
    _, tmp = setup
    run = tmp / "run"
    run.mkdir()
    summary = execute(run, config(tmp))
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(0, 7))
    assert all(k in rows[1] for k in TRL_METRICS)
    assert "eval/ranking_accuracy" in rows[0] and "eval/ranking_accuracy" in rows[3] and "eval/gold_logprob" in rows[6]
    assert summary["state"] == "finished" and read_status(run)["state"] == "finished"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002", "step-000004", "step-000006"]
    assert json.loads((run / "config.json").read_text())["lam"] == 1.0
    assert len((run / "pairs.jsonl").read_text().splitlines()) == 8


KILL_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from yfpo_core.models import register_model
from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, wrap_toy_model
from yfpo_core.runs import execute, resume_run
from yfpo_core.training.config import YFPOConfig
model = wrap_toy_model(build_toy_model(toy_config_kwargs({"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 64,
                                                            "n_ctx": 128})), source="test")
register_model("tiny-kill", lambda device: model)
run = Path(sys.argv[1])
cfg = YFPOConfig(model="tiny-kill", neuron_set=str(run.parent / "set.json"), problems="toy", eval_problems="toy",
                 n_train_problems=8, n_eval_problems=4, steps=int(sys.argv[2]), batch_pairs=4, lam=1.0,
                 trainable="units", lr=1e-2, warmup_steps=0, eval_every=0, checkpoint_every=3)
if sys.argv[3] == "resume":
    run_ = resume_run(run)
    run_.base = model
    run_.start().join()  # in this process's thread, to the end
    print(run_.state, run_.error)
else:
    run.mkdir(exist_ok=True)
    execute(run, cfg)
"""


def test_kill_mid_run_then_resume_gives_a_consistent_metrics_file(setup):
    _, tmp = setup
    script = tmp / "kill.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    run = tmp / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(run), "400", "fresh"], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_metrics(run)) < 9 and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, f"the training process ended by itself (exit {proc.returncode}) before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = read_metrics(run)
    assert 9 <= len(rows) < 401
    last_checkpoint = int(latest_checkpoint(run).name.split("-")[1])
    # resume with a shorter budget so the test ends soon
    config_path = run / "config.json"
    cfg = json.loads(config_path.read_text())
    cfg["steps"] = last_checkpoint + 4
    config_path.write_text(json.dumps(cfg))
    out = subprocess.run([sys.executable, str(script), str(run), str(cfg["steps"]), "resume"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "finished None" in out.stdout
    steps = [r["step"] for r in read_metrics(run)]
    assert steps == list(range(0, cfg["steps"] + 1))  # every step once, in order, nothing torn


def test_an_error_during_preparation_ends_in_failed_with_the_reason(setup):
    _, tmp = setup
    run = tmp / "bad-set"
    run.mkdir()
    with pytest.raises(YfpoError):
        execute(run, config(tmp, neuron_set=str(tmp / "missing.json")))
    status = read_status(run)
    assert status["state"] == "failed" and "missing.json" in status["error"]  # was stuck at "preparing"


def test_ctrl_c_ends_in_stopped(setup):
    _, tmp = setup
    run = tmp / "interrupted"
    run.mkdir()
    calls = []

    def ctrl_c_after_two_steps() -> bool:
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        execute(run, config(tmp, checkpoint_every=1), should_stop=ctrl_c_after_two_steps)
    status = read_status(run)
    assert status["state"] == "stopped" and "Ctrl-C" in status["reason"]  # was "running"
    assert status["last_checkpoint"].endswith("step-000002")


def _resumed_after_a_kill(model, tmp, name: str, files: dict[str, str]):
    """A 2-step run folder holding ``config.json`` and ``files`` as a kill left them, resumed to the end."""
    run = tmp / name
    run.mkdir()
    cfg = config(tmp, steps=2, eval_every=0, checkpoint_every=0)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    for file_name, text in files.items():
        (run / file_name).write_text(text)
    resumed = resume_run(run, base=model).start()
    resumed.join()
    assert resumed.state == "finished", resumed.error
    return run


def test_resume_after_a_kill_during_preparation_rebuilds_the_files(setup):
    model, tmp = setup
    run = _resumed_after_a_kill(model, tmp, "prep-killed",
                                {"pairs.jsonl": '{"question": "Q", "chosen": "a", "rej'})  # torn by the kill
    assert len(load_pairs(run / "pairs.jsonl")) > 0
    assert isinstance(json.loads((run / "units.json").read_text())["units"], list)


def test_resume_before_the_first_checkpoint_logs_step_0_once(setup):
    model, tmp = setup
    run = _resumed_after_a_kill(model, tmp, "early-kill",
                                {"metrics.jsonl": json.dumps({"step": 0, "eval/ranking_accuracy": 0.5}) + "\n"})
    assert [r["step"] for r in read_metrics(run)] == [0, 1, 2]  # was [0, 0, 1, 2]


def test_execute_reports_each_preparation_phase_then_the_steps(setup):
    """Toy problems, 8 training pairs in batches of 4 (2 batches), 4 held-out problems, 3 steps: the phases
    come in order, each reaching its own total, then one report per step (evaluations within them)."""
    from yfpo_core.training.shared_cache import clear_shared

    _, tmp_path = setup
    clear_shared()  # a fresh preparation: the other tests' runs on this model would answer from the cache
    calls = []
    run_config = config(tmp_path, steps=3, eval_every=3, checkpoint_every=3, sign="pairs")
    execute(tmp_path / "run", run_config, progress=lambda done, total, message="": calls.append((done, total, message)))
    phases = list(dict.fromkeys(message.split(":")[0] for _, _, message in calls if message != STEP_DONE))
    assert phases == ["model", "training problems", "held-out problems", "pairs", "units", "copying the model",
                      "frozen prefix", "reference log-probs", "unit signs", "step-0 evaluation",
                      "evaluation at step 3"]

    def last(name):
        return [(d, t) for d, t, m in calls if m.split(":")[0] == name][-1]

    assert last("frozen prefix") == (2, 2) and last("reference log-probs") == (2, 2)
    assert (4, 4) in [(d, t) for d, t, m in calls if m == "step-0 evaluation: answer ranking"]
    assert [(d, t) for d, t, m in calls if m == STEP_DONE] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    # Nothing of the preparation comes after the first step's report.
    first_step = calls.index((1, 3, STEP_DONE))
    assert all(m in (STEP_DONE,) or m.startswith("evaluation at step") for _, _, m in calls[first_step:])
