"""The study layer: Ray Tune + Optuna studies over the restart loop of :mod:`plasticity`.

Where things live (imports go down this list, never up: tests/test_layout.py checks it)::

    cli.py          parses ``plasticity study ...``, nothing else
    commands.py     validate, launch, resume, extend; finish (summary and analysis)
    status.py       status and list: read-only, no Ray, no torch
    driver/         the process that runs the study's one Ray Tune experiment
      ray_setup.py    connect to Ray, workers' environment, log filters, resource check
      repair.py       keep Ray's snapshot restorable (checks before restore, copies)
      tuner.py        the Tuner: trainable, searcher, sampler, scheduler, progress table
      experiment.py   fit the experiment to its end; refresh the views
    search/         the searcher (Optuna through Ray Tune) and the search's one record
    trainable.py    the Ray Tune function trainable (one trial: the restart loop)
    tracking.py     MLflow / W&B callbacks
    store/          the study folder, no Ray: folder.py (files on a path or URI),
                    state.py (study.json, study.yaml), snapshot.py (Ray's snapshot files),
                    views.py (optuna.db)
    plan.py         what a study will do: phases, planned trials, base runs, validate's plan
    spec.py         the study file (YAML), validated
    space.py        the define-by-run search space; a trial's run from chosen values
    faults.py       fault injection: the fault suite's faults, driver points, trial faults
    trials.py       what a trial is: phase labels, reported keys, the best-trial rule

A new command: parse it in cli.py, write it in commands.py (or status.py if it only reads).
A new fault: study/faults.py (its name in SUITE, a hook if it strikes from inside) and its
code in benchmarks/faults.py. A change to optuna.db: store/views.py. A change to what
study.json holds: store/state.py (and the searcher that it views, search/study_search.py).
Every Ray and Optuna workaround sits where it applies, with a comment naming the upstream
behaviour it compensates; names that Ray pickles into a study folder (study.search.*,
study.space.define_space, study.driver.trial_dirname) are part of its format.
"""
