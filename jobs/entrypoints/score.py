"""Ray job entrypoint: ``python -m jobs.entrypoints.score [aepipe score arguments]``."""

from jobs.entrypoints import run

if __name__ == "__main__":
    run("score")
