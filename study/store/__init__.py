"""A study folder and what it holds, read and written with no Ray and no torch: the folder
itself (:mod:`.folder`), study.json (:mod:`.state`), Ray Tune's experiment snapshots as files
(:mod:`.snapshot`) and the optuna.db views of the search (:mod:`.views`)."""
