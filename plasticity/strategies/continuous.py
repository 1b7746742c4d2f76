"""``continuous``: keep training the same network through every objective change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from plasticity.strategies.base import Strategy


@dataclass(frozen=True)
class Params:
    reset_optimizer: bool = False
    """Start a fresh optimizer (Adam moments cleared) at each task boundary."""

    SEARCH: ClassVar[dict[str, Any]] = {"reset_optimizer": [False, True]}

    def validate(self) -> None:
        pass


class Continuous(Strategy):
    name = "continuous"
    Params = Params

    def begin_task(self, task: int) -> None:
        if self.params.reset_optimizer:
            self.reset_optimizer()
