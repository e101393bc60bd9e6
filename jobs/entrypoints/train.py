"""Ray job entrypoint: ``python -m jobs.entrypoints.train [aepipe train arguments]``."""

from jobs.entrypoints import run

if __name__ == "__main__":
    run("train")
