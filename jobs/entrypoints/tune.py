"""Ray job entrypoint: ``python -m jobs.entrypoints.tune [aepipe tune arguments]``."""

from jobs.entrypoints import run

if __name__ == "__main__":
    run("tune")
