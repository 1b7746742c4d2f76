"""The driver: the process that runs a study's one Ray Tune experiment.

- :mod:`.ray_setup`: connecting to Ray (local or a cluster), what the workers get, the check
  that one trial fits, and the log filters for what a restore makes normal;
- :mod:`.repair`: keeping Ray's snapshot restorable (checks before a restore, copies while
  the study runs);
- :mod:`.tuner`: the Tuner (trainable, searcher, sampler, scheduler, progress table);
- :mod:`.experiment`: fitting the experiment to its end, and refreshing the views.
"""

# Ray pickles trial_dirname by reference into tuner.pkl and search_gen_state-*.json as
# ``study.driver.trial_dirname``: that name is part of a study folder's format.
from study.driver.tuner import trial_dirname

__all__ = ["trial_dirname"]
