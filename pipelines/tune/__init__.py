"""``aepipe tune``: a job config and a search space in, trials on Ray Tune, the best trial's model registered.

:func:`pipelines.tune.driver.run_tuning` prepares the corpus once (:func:`pipelines.train.driver.prepare_data`),
runs :func:`pipelines.tune.trial.run_trial` per sampled config (:mod:`pipelines.tune.space`) under ASHA, judges
trials by :mod:`pipelines.tune.objective`, writes :mod:`pipelines.tune.leaderboard` and registers the best.
"""
