"""A study's search budget and evaluation: how many trials each strategy's search gets, how
they are chosen (TPE's random start-up, the scheduler), and the fresh seeds every best
configuration is re-run on. Part of the study file (:mod:`study.spec`: its ``budget`` key).

A budget is a ladder of rungs: ``trials_per_strategy: [4, 8, 16]`` runs each strategy's search
to 16 trials and evaluates its best-so-far after 4, 8 and 16 (a single number is a ladder of
one rung). With few trials, a strategy that searches more parameters is behind for lack of
search rather than of merit: ``trials_per_param: [2, 4]`` gives each strategy 2 and 4 trials
per parameter it searches instead, and every comparison says at which budget it was made.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

DEFAULT_TRIALS = 4
"""Search trials per strategy when the budget names none."""
EVAL_SEED_BASE = 1000
"""The first evaluation seed unless a study file says otherwise (1000, 1001, …)."""


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trials_per_strategy: StrictInt | list[StrictInt] | None = None
    """Optuna trials for each strategy's search (equal for all, so baselines are tuned too;
    default 4); a list is a ladder: the search runs to the largest, and each strategy's best
    after each number of trials is evaluated (:meth:`ladder`)."""
    trials_per_param: StrictInt | list[StrictInt] | None = None
    """Instead of ``trials_per_strategy``: trials per searched parameter (a number or a
    ladder), so a strategy searching 5 parameters gets 5 times the trials of one searching 1."""
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

    @model_validator(mode="before")
    @classmethod
    def _one_policy(cls, data: Any) -> Any:
        given = [k for k in ("trials_per_strategy", "trials_per_param") if isinstance(data, dict)
                 and data.get(k) is not None]  # fmt: skip
        if len(given) == 2:
            raise ValueError("give trials_per_strategy or trials_per_param, not both")
        return data

    @model_validator(mode="after")
    def _check_rungs(self) -> Budget:
        for name in ("trials_per_strategy", "trials_per_param"):
            value = getattr(self, name)
            rungs = value if isinstance(value, list) else [value]
            if value is not None and (not rungs or min(rungs) < 1 or rungs != sorted(set(rungs))):
                raise ValueError(
                    f"{name} must be a whole number >= 1 or a list of them, each larger than "
                    f"the one before; got {value}"
                )
        return self

    @property
    def policy(self) -> str:
        """``trials_per_strategy`` or ``trials_per_param``: how the rungs are counted."""
        return "trials_per_param" if self.trials_per_param is not None else "trials_per_strategy"

    def ladder(self, searched: int) -> list[int]:
        """A strategy's rungs, ascending: the numbers of its search trials after which its
        best-so-far is evaluated, the largest its whole search. ``searched``: how many
        parameters it searches (used by ``trials_per_param`` only)."""
        if self.trials_per_param is None:
            value, scale = self.trials_per_strategy or DEFAULT_TRIALS, 1
        else:
            value, scale = self.trials_per_param, max(1, searched)
        return [n * scale for n in (value if isinstance(value, list) else [value])]

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

    def startup(self, largest: int) -> int:
        """TPE's random start-up trials of a search of ``largest`` trials (a strategy's largest
        rung): as given, else a third of them, 2 to 10 (Optuna's default of 10 would leave a
        4-trial search purely random). The first this many trials of a search, in the order
        they were suggested, are sampled at random: i.i.d. draws from the space."""
        if self.startup_trials is not None:
            return self.startup_trials
        return max(2, min(10, largest // 3))

    def search_kind(self, trials: int, largest: int) -> str:
        """How a search of ``largest`` planned trials chose its first ``trials`` (more than
        ``largest`` once the study was extended), for summaries."""
        startup = self.startup(largest)
        random, guided = min(startup, trials), trials - startup
        if guided <= 0:
            return f"random search ({trials} trials, all TPE start-up)"
        return f"{random} random start-up + {guided} TPE trials"
