"""The one way the driver listens to Ray Tune: `driver_callback(handler)` is a Tune `Callback`
that hands each trial event to the method of the same name on a plain object. Ray is imported
only when one is made, and Tune saves nothing of it into its experiment state (the handler holds
the driver's store connection and terminal, which belong to this process)."""
from __future__ import annotations

from typing import Any

# the trial events a handler may define: on_trial_start(trial), on_trial_result(trial, result), ...
EVENTS = ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error", "on_trial_recover")


def driver_callback(handler: Any) -> Any:
    """A Tune callback forwarding ``on_trial_*(iteration, trials, trial, ...)`` to
    ``handler.on_trial_*(trial, ...)`` for each event the handler defines."""
    from ray.tune import Callback

    def forward(event: str):
        def call(self, iteration, trials, trial, *args, **info):
            # Tune passes its arguments by keyword; of them only `result` is the handler's
            extra = (info["result"],) if "result" in info else ()
            return getattr(self.handler, event)(trial, *args, *extra)
        return call

    def keep(self, handler: Any) -> None:
        self.handler = handler

    # the handler is the instance's, never the class's: Tune may pickle the class by value, and
    # drops the instance's state (the handler) through __getstate__
    methods = {event: forward(event) for event in EVENTS if hasattr(handler, event)}
    forwarding = type("DriverCallback", (Callback,), {"__init__": keep, "__getstate__": lambda self: {}, **methods})
    return forwarding(handler)
