"""A study's search budget and evaluation: how many trials each strategy's search gets, how
they are chosen (TPE's random start-up, the scheduler), and the fresh seeds every best
configuration is re-run on. Part of the study file (:mod:`study.spec`: its ``budget`` key).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

EVAL_SEED_BASE = 1000
"""The first evaluation seed unless a study file says otherwise (1000, 1001, …)."""


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trials_per_strategy: int = Field(4, ge=1)
    """Optuna trials for each strategy's search (equal for all, so baselines are tuned too)."""
    eval_seeds: int = Field(5, ge=0)
    """Fresh seeds the best configuration of each strategy is re-run on (0: no evaluation)."""
    search_seed: int = 0
    """The seed the search trials train with (and the TPE sampler's seed)."""
    scheduler: Literal["fifo", "asha"] = "fifo"
    """asha stops poor trials early (Optuna records them PRUNED, never as complete trials)."""
    grace_epochs: int = Field(10, ge=1)
    """asha: epochs of restart tasks (task 0 does not count) a trial runs before it may be
    stopped; at least the epochs per restart, so the first cut judges a whole new task."""
    startup_trials: int | None = Field(None, ge=1)
    """Random trials before TPE models the results (default: :meth:`startup`)."""
    eval_seed_base: int | None = Field(None, ge=0)
    """Evaluation seeds are ``eval_seed_base``, +1, … (default 1000: never the search's seed)."""
    eval_seed_list: list[StrictInt] | None = Field(None, min_length=1)
    """Explicit evaluation seeds instead (distinct, ≥ 0); ``eval_seeds`` defaults to their
    count."""

    @model_validator(mode="before")
    @classmethod
    def _count_listed_seeds(cls, data: Any) -> Any:
        listed = data.get("eval_seed_list") if isinstance(data, dict) else None
        if isinstance(listed, list) and "eval_seeds" not in data:
            data = {**data, "eval_seeds": len(listed)}
        return data

    @model_validator(mode="after")
    def _check_eval_seeds(self) -> Budget:
        listed = self.eval_seed_list
        if listed is not None:
            if self.eval_seed_base is not None:
                raise ValueError("give eval_seed_base or eval_seed_list, not both")
            if len(listed) != self.eval_seeds:
                raise ValueError(
                    f"eval_seeds ({self.eval_seeds}) and eval_seed_list ({len(listed)} seeds) "
                    "disagree; give one of them"
                )
            if len(set(listed)) != len(listed) or min(listed) < 0:
                raise ValueError(f"eval_seed_list must hold distinct seeds >= 0, got {listed}")
        if self.search_seed in self.eval_seed_values():
            raise ValueError(
                f"the evaluation seeds {self.eval_seed_values()} include the search seed "
                f"({self.search_seed}): the evaluation must run on fresh seeds"
            )
        return self

    def eval_seed_values(self) -> list[int]:
        """The seeds every strategy's best configuration is re-run on, in order."""
        if self.eval_seed_list is not None:
            return list(self.eval_seed_list)
        base = EVAL_SEED_BASE if self.eval_seed_base is None else self.eval_seed_base
        return list(range(base, base + self.eval_seeds))

    def startup(self) -> int:
        """TPE's random start-up trials: as given, else a third of the budget, 2 to 10 (Optuna's
        default of 10 would leave a 4-trial search purely random)."""
        if self.startup_trials is not None:
            return self.startup_trials
        return max(2, min(10, self.trials_per_strategy // 3))

    def search_kind(self, trials: int | None = None) -> str:
        """How the search chose its ``trials`` (default: ``trials_per_strategy``; more once
        the study was extended), for summaries."""
        trials = self.trials_per_strategy if trials is None else trials
        random, guided = min(self.startup(), trials), trials - self.startup()
        if guided <= 0:
            return f"random search ({trials} trials, all TPE start-up)"
        return f"{random} random start-up + {guided} TPE trials"
