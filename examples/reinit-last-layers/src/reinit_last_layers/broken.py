"""The same strategy with a mistake the conformance kit catches: the last layers are replaced
by new modules, and the optimizer is never told. It goes on stepping the old, detached tensors
while the new layers never train (a bug a public plasticity framework shipped).
``plasticity check-strategy reinit_last_layers.broken:ForgetsTheOptimizer`` fails its
``optimizer`` rule and names the tensors left out.
"""

from __future__ import annotations

from reinit_last_layers import ReinitLastLayers, last_layers


class ForgetsTheOptimizer(ReinitLastLayers):
    def begin_task(self, task: int) -> None:
        old = last_layers(self._model, self.params.layers)
        new = last_layers(self.fresh(task), self.params.layers)
        swap = {id(m): n for m, n in zip(old, new)}
        for parent in list(self._model.modules()):
            for child_name, child in parent.named_children():
                if id(child) in swap:
                    setattr(parent, child_name, swap[id(child)])
        # The mistake: the optimizer still holds the replaced layers' tensors. The fix is
        # self.reset_optimizer() here, or copying into the old parameters as the parent does.
