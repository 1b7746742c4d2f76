"""The study layer: Ray Tune trainables and Optuna search over the restart loop."""
