"""A training run in a thread (yfpo_core.runs.background.TrainingRun): stop and snapshot, objects held in memory."""

from __future__ import annotations

import time

from tests.helpers import trainer_config as config
from yfpo_core.runs import TrainingRun, latest_checkpoint


def test_background_run_stop_and_snapshot(setup):
    _, tmp = setup
    run = TrainingRun(config(tmp, steps=200, eval_every=0), run_dir=tmp / "bg").start()
    deadline = time.time() + 60
    while run.snapshot()["step"] < 3 and time.time() < deadline:
        time.sleep(0.05)
    run.stop()
    run.join(60)
    snap = run.snapshot()
    assert run.state == "stopped" and 3 <= snap["step"] < 200 and snap["error"] is None
    assert latest_checkpoint(tmp / "bg").name == f"step-{snap['step']:06d}"  # stopping keeps every step


def test_a_run_trains_on_the_set_and_saes_it_is_given(setup, monkeypatch):
    """The Train page's path: the set is in memory (and saved in the run folder for resume); the run takes
    the objects, reads neither the set nor its SAE back, and records the given set's units."""
    from tests.helpers import save_tiny_sae
    from yfpo_core.runs import RunDir
    from yfpo_core.saes import set_saes
    from yfpo_core.saes.sae import load_sae
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.units.unit import Unit

    model, tmp = setup
    sae = load_sae(str(save_tiny_sae(tmp / "tiny-sae")), model)
    feature = Unit("sae_feature", "blocks.1.mlp.hook_post", 4, sae_id="tiny-sae")
    current = NeuronSet.create([Unit.neuron(1, 9), feature], model, scores=[1.0, 2.0],
                               sae={"tiny-sae": sae.neuron_set_entry()})
    run_dir = tmp / "given"
    saved = current.save(RunDir(run_dir).neuron_set_path)

    def no_reading(*args, **kwargs):
        raise AssertionError("read from disk although it was given")

    monkeypatch.setattr(NeuronSet, "load", no_reading)
    monkeypatch.setattr(set_saes, "load_sae", no_reading)
    run = TrainingRun(config(tmp, neuron_set=str(saved), trainable="mlp_last_k", steps=2, eval_every=0),
                      run_dir=run_dir, base=model, neuron_set=current, saes={"tiny-sae": sae}).start()
    run.join(120)
    assert run.state == "finished", run.error
    assert RunDir(run_dir).units_doc()["units"] == ["blocks.1.mlp.hook_post:9", "sae:tiny-sae:4"]
    assert run.given == {} and run.base is None  # the run holds none of them once it has ended
