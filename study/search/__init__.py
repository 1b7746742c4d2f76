"""The search: Ray Tune's OptunaSearch told only about whole trials, one per strategy, all run
side by side by the study's one searcher, and the one record of the search.

One record: each strategy's Optuna study lives in memory inside the searcher, and Ray Tune
saves the searcher with every experiment snapshot (``searcher-state-*.pkl``, written in the
same step as the trial states of ``experiment_state-*.json``; see :mod:`study.store.snapshot`
and :mod:`study.driver.repair` for what a kill or a full disk can do to that pair). So the
search's Optuna record and Ray's trials come from the same moment: a restore rolls both back
together, a trial can never be COMPLETE in one and running in the other, and the record holds
no path. optuna.db and study.json are views of it (:mod:`study.store`).

- :mod:`.whole_trial`: one strategy's OptunaSearch, COMPLETE only for trials that ran whole;
- :mod:`.study_search`: every strategy's search side by side, then each one's evaluation;
- :mod:`.scheduler`: ASHA per strategy's search;
- :mod:`.generator`: Ray's SearchGenerator, restoring where the study is now;
- :mod:`.attached`: what the running driver attaches (never pickled);
- :mod:`.saved`: the searcher of a snapshot, read back.

Ray pickles these classes by reference into every study folder (``tuner.pkl``,
``searcher-state-*.pkl``, ``search_gen_state-*.json``), under the names this package gives
them here: the names below are part of a study folder's format, and studies written before the
package was split (``study.search.StudySearch``, ...) resume through them.
"""

from study.search.generator import RootedSearchGenerator
from study.search.scheduler import PerStrategyScheduler
from study.search.study_search import StudySearch
from study.search.whole_trial import WholeTrialSearch

__all__ = ["PerStrategyScheduler", "RootedSearchGenerator", "StudySearch", "WholeTrialSearch"]
