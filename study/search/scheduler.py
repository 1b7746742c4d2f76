"""ASHA (or any scheduler) per strategy: a search trial is ranked only against trials of its
own strategy's search; evaluation trials always run to the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.trials import SEARCH


class PerStrategyScheduler(FIFOScheduler):
    """A scheduler per strategy's search (``make()`` builds one, e.g. ASHA), so trials are
    ranked only against trials of the same strategy; evaluation trials always run to the end.
    Trials start first come, first served (FIFO), as the searcher suggested them."""

    def __init__(self, make: Callable[[], TrialScheduler], strategies: list[str], metric: str):
        super().__init__()
        self.schedulers = {s: make() for s in strategies}
        self._metric, self._mode = metric, "max"

    def _of(self, trial: Any) -> TrialScheduler | None:
        config = trial.config
        if config.get("phase") != SEARCH:
            return None
        return self.schedulers.get(config.get("strategy"))

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return all(s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values())

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if (scheduler := self._of(trial)) is not None:
            return scheduler.on_trial_result(tune_controller, trial, result)
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if (scheduler := self._of(trial)) is not None:
            scheduler.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{s}: {x.debug_string()}" for s, x in self.schedulers.items())
