"""plasticity: can a trained network learn a new objective faster than a fresh one?

The science layer, plain PyTorch (no Ray). Reading order, like a small textbook:
``data`` → ``objectives`` → ``models`` → ``schedules`` → ``strategies`` → ``loop``.
"""

from plasticity.errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]
