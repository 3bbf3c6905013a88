"""The driver's one Tune callback: each trial event reaches the handler's method of the same
name, events the handler lacks are Tune's no-ops, and pickling it (as Tune saves its
experiment state) carries nothing of the handler."""
from __future__ import annotations

import sqlite3
import threading
from types import SimpleNamespace

import cloudpickle

from benchmark.cluster.tune_events import driver_callback


class Handler:
    def __init__(self):
        self.events: list[tuple] = []
        self.conn = sqlite3.connect(":memory:")  # what a store holds: never picklable
        self.lock = threading.Lock()

    def on_trial_result(self, trial, result):
        self.events.append(("result", trial.trial_id, result["x"]))

    def on_trial_error(self, trial):
        self.events.append(("error", trial.trial_id))


def test_events_reach_the_handler_and_pickling_leaves_it_behind():
    handler = Handler()
    callback = driver_callback(handler)
    trial = SimpleNamespace(trial_id="t1")
    # by keyword, as Tune's callback list calls them, and by position
    callback.on_trial_result(iteration=0, trials=[], trial=trial, result={"x": 3}, extra="ignored")
    callback.on_trial_result(1, [], trial, {"x": 4})
    callback.on_trial_error(iteration=2, trials=[], trial=trial, exception=RuntimeError("x"))
    callback.on_trial_complete(iteration=3, trials=[], trial=trial)  # not the handler's: Tune's own no-op
    assert handler.events == [("result", "t1", 3), ("result", "t1", 4), ("error", "t1")]
    restored = cloudpickle.loads(cloudpickle.dumps(callback))
    assert not hasattr(restored, "handler") and callback.handler is handler
