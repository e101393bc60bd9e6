"""aepipe's pipeline stages, each a package: ``data`` (read, validate, normalize, split a corpus with Ray
Data), ``train`` (Ray Train driver and worker loop), ``score`` (plan, score with an actor pool, publish
exactly once, check drift) and ``tracking`` (MLflow runs, registry, promotion gate, pyfunc, plots).

``config`` holds the typed job configs every stage reads; ``bundle`` the trained model as the stages pass it
on (weights, normalizer, calibration). Nothing here parses arguments, reads the environment or calls
``ray.init``: that is ``jobs/``.
"""
