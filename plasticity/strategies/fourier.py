"""``fourier``: deep Fourier features (Lewandowski, Schuurmans & Machado 2024, "Plastic learning
with deep Fourier features", ICLR 2025): train one network continuously, with every activation
replaced by the concatenation of a sine and a cosine of the pre-activation ``z``,

    φ(z) = [sin(z), cos(z)]

(the abstract: "the concatenation of a sine and cosine in every layer"; Plasticine's
``DFFLayer4Linear``/``DFFLayer4Conv2d`` compute ``cat(sin(x), cos(-x))``, the same values).
Each unit passes on two features, as under CReLU, so the hidden widths are narrowed
(:func:`plasticity.models.crelu_spec`) until the parameter count is within 1% of the base
architecture's: the comparison with ReLU networks is at an equal parameter count, this
project's convention for CReLU (the paper's own width convention was not checked here).

The paper finds deep Fourier features work best "combined with regularization"; that is not part
of this strategy (the optimizer's weight decay is the setting's, as for every strategy), so
``fourier`` has no hyperparameters of its own and its search space is the learning rate.
"""

from __future__ import annotations

from plasticity.strategies.base import Strategy


class DeepFourier(Strategy):
    name = "fourier"
    activation = "fourier"
