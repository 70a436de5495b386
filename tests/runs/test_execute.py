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

from tests.helpers import trainer_config as config
from yfpo_core.runs import execute, latest_checkpoint, read_metrics, read_status

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
