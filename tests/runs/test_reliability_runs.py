"""Issue 11, runs: no bad step applied, one writer per run directory, every failure ends in a known state.

Covers items 2 (non-finite updates and checkpoints), 3 (two writers), 4 (grad_clip), 7 (stale status,
``runs list``), 8 (``pairs.jsonl`` atomic and repaired) and 9 (resume edge cases), on the tiny model of
``tests/training/test_trainer.py``. Each test fails on the code before the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.helpers import trainer_for
from tests.helpers import trainer_config as config
from yfpo_core.errors import YfpoError
from yfpo_core.runs import RunDir, execute, latest_checkpoint, read_metrics, read_status, resume_run
from yfpo_core.training.config import YFPOConfig
from yfpo_core.training.pairs_io import load_pairs
from yfpo_core.training.trainer import NonFiniteLossError


# -- item 2 and 4: every numeric field is checked ------------------------------------------------------------
@pytest.mark.parametrize("change, words", [
    ({"steps": 5.5}, "steps must be a whole number, got 5.5"),
    ({"steps": "10"}, "steps must be a whole number, got '10' (str)"),
    ({"steps": None}, "steps must be set (got null)"),
    ({"lr": float("inf")}, "lr must be a finite number, got inf"),
    ({"lr": float("nan")}, "lr must be a finite number, got nan"),
    ({"lr": 1e6}, "lr must be > 0 and <= 1"),
    ({"beta": float("inf")}, "beta must be a finite number"),
    ({"grad_clip": -1}, "grad_clip must be > 0"),
    ({"grad_clip": 0}, "grad_clip must be > 0"),
    ({"n_eval_problems": -1}, "n_eval_problems must be >= 0"),
    ({"max_length": 1}, "max_length must be >= 8"),
    ({"standardize": "yes"}, "standardize must be true or false"),
    ({"model": 3}, "model must be text"),
    ({"device": "gpu"}, "device must be cpu, cuda"),
])
def test_every_config_field_is_type_and_range_checked(change, words):
    with pytest.raises(YfpoError) as info:
        YFPOConfig.from_dict({"lam": 0, **change})
    assert words in str(info.value)


def test_config_files_of_earlier_versions_still_load_and_whole_floats_are_counts():
    old = {"model": "m", "lam": 0, "steps": 12.0, "beta": 1}  # written before the new fields existed
    config_ = YFPOConfig.from_dict(old)
    assert config_.steps == 12 and isinstance(config_.steps, int) and config_.beta == 1.0


def test_a_non_finite_update_is_rolled_back(setup):  # noqa: F811
    _, tmp = setup
    trainer = trainer_for(config(tmp))
    real_step = trainer.optimizer.step

    def overflowing_step():
        real_step()
        trainer.params[0][1].data[0].fill_(float("inf"))  # what lr=1e38 would do

    trainer.optimizer.step = overflowing_step
    before = {name: p.detach().clone() for name, p, _ in trainer.params}
    with pytest.raises(NonFiniteLossError, match="rolled back"):
        trainer.train_step(1)
    for name, p, _ in trainer.params:
        assert torch.equal(p.detach(), before[name]), name  # the model is exactly as before the step


def test_a_non_finite_checkpoint_is_never_written(setup):  # noqa: F811
    _, tmp = setup
    trainer = trainer_for(config(tmp))
    with torch.no_grad():
        trainer.params[0][1].data.view(-1)[0] = float("nan")
    run = tmp / "run"
    run.mkdir()
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        RunDir(run).checkpoint(trainer, 1)
    assert latest_checkpoint(run) is None and not (run / "checkpoints").exists()


@pytest.mark.parametrize("flags", [["--lr", "inf"], ["--lr", "nan"], ["--grad-clip", "-1"]])
def test_train_refuses_non_finite_or_reversing_options_before_writing(setup, flags, capsys):  # noqa: F811
    from yfpo_core.cli import main

    _, tmp = setup
    cfg = config(tmp).to_dict()
    (tmp / "run.json").write_text(json.dumps(cfg))
    assert main(["train", "--config", str(tmp / "run.json"), "--out-dir", str(tmp / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yfpo: error: invalid training config") and err.count("\n") == 1
    assert not (tmp / "r" / "checkpoints").exists()


# -- item 3: one writer per run directory --------------------------------------------------------------------
def test_a_second_writer_gets_a_one_line_error_and_changes_nothing(setup, capsys):  # noqa: F811
    from yfpo_core.cli import main
    from yfpo_core.runs.lock import RunLock, RunLockedError

    _, tmp = setup
    run = tmp / "shared"
    with RunLock(run):
        (run / "status.json").write_text('{"state": "running"}')
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}"):
            execute(run, config(tmp))
        (tmp / "run.json").write_text(json.dumps(config(tmp).to_dict()))
        assert main(["train", "--config", str(tmp / "run.json"), "--out-dir", str(run)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("yfpo: error:") and "is in use by process" in err and err.count("\n") == 1
        assert read_status(run)["state"] == "running" and not (run / "metrics.jsonl").exists()


def test_a_lock_left_by_a_killed_process_is_stale(setup):  # noqa: F811
    from yfpo_core.runs.lock import RunLock, is_locked
    from yfpo_core.runs import run_state

    _, tmp = setup
    run = tmp / "crashed"
    run.mkdir()
    (run / "status.json").write_text('{"state": "running"}')
    code = textwrap.dedent(f"""
        import os, signal
        from yfpo_core.runs.lock import RunLock
        RunLock({str(run)!r}).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == -9
    assert (run / ".lock").exists() and not is_locked(run)
    assert run_state(run) == "interrupted"  # status.json says running, nobody holds the lock
    with RunLock(run):  # the next writer takes it
        assert is_locked(run)


# -- item 7: every failure ends in a known state -------------------------------------------------------------
def test_an_error_during_preparation_ends_in_failed_with_the_reason(setup):  # noqa: F811
    _, tmp = setup
    run = tmp / "bad-set"
    run.mkdir()
    with pytest.raises(YfpoError):
        execute(run, config(tmp, neuron_set=str(tmp / "missing.json")))
    status = read_status(run)
    assert status["state"] == "failed" and "missing.json" in status["error"]  # was stuck at "preparing"


def test_ctrl_c_ends_in_stopped(setup):  # noqa: F811
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


def test_runs_list_survives_a_damaged_config(setup, tmp_path, capsys):  # noqa: F811
    from yfpo_core.cli import main

    for name, text in (("good", json.dumps({"lam": 0, "steps": 3})), ("bad", "{")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "bad" in out and "unreadable config.json" in out


# -- items 8 and 9: resume repairs preparation and keeps one line per step -----------------------------------
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


def test_resume_after_a_kill_during_preparation_rebuilds_the_files(setup):  # noqa: F811
    model, tmp = setup
    run = _resumed_after_a_kill(model, tmp, "prep-killed",
                                {"pairs.jsonl": '{"question": "Q", "chosen": "a", "rej'})  # torn by the kill
    assert len(load_pairs(run / "pairs.jsonl")) > 0
    assert isinstance(json.loads((run / "units.json").read_text())["units"], list)


def test_resume_before_the_first_checkpoint_logs_step_0_once(setup):  # noqa: F811
    model, tmp = setup
    run = _resumed_after_a_kill(model, tmp, "early-kill",
                                {"metrics.jsonl": json.dumps({"step": 0, "eval/ranking_accuracy": 0.5}) + "\n"})
    assert [r["step"] for r in read_metrics(run)] == [0, 1, 2]  # was [0, 0, 1, 2]


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "no such run directory"),
    (lambda d: d.mkdir(), "has no config.json"),
    (lambda d: d.write_text("x"), "is a file, not a run directory"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"steps": ')), "cannot be read"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"steps": "10"}')), "steps must be a whole number"),
])
def test_resume_of_something_that_is_not_a_run_says_so(tmp_path, capsys, make, words):
    from yfpo_core.cli import main

    target = tmp_path / "target"
    make(target)
    assert main(["train", "--resume", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yfpo: error:") and words in err and err.count("\n") == 1
