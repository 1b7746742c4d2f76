"""``crelu`` (Abbas et al. 2023, "Loss of plasticity in continual deep reinforcement learning"):
train one network continuously, with concatenated ReLU activations ``[relu(x), relu(−x)]``.

CReLU doubles the features each layer passes on, so the hidden widths are shrunk
(:func:`plasticity.models.crelu_spec`) until the parameter count is within 1% of the base
architecture's; ``plasticity models`` lists both.
"""

from __future__ import annotations

from plasticity.strategies.base import Strategy


class CReLUStrategy(Strategy):
    name = "crelu"
    activation = "crelu"
