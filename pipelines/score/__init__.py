"""Scoring stage: a registered model version and a corpus in; a published, scored partition out.

``driver.run_scoring`` pins the model version and plans the shards; ``actor.Scorer`` runs in a Ray Data
actor pool and writes the scored rows to the output store itself (``output``), handing the driver summaries
only; ``publish`` verifies and commits each partition exactly once with one manifest (no rename, so object
storage works alike); ``drift`` compares the score distribution with the validation baseline.

This ``__init__`` imports nothing: the actor's module is loaded in every scoring actor, which must not pay
for the driver's imports (MLflow).
"""
