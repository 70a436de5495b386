"""One writer per run folder (yfpo_core.runs.lock): a second writer changes nothing; a killed writer's lock is
stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import trainer_config as config
from yfpo_core.runs import execute, read_status


def test_a_second_writer_gets_a_one_line_error_and_changes_nothing(setup, capsys):
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


def test_a_lock_left_by_a_killed_process_is_stale(setup):
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
