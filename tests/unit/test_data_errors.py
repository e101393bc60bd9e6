"""A :class:`DataError` raised in a Ray task is found on the driver as an object, with its message as written:
nothing is parsed out of the text of Ray's traceback."""

from __future__ import annotations

import pickle

from ray.exceptions import RayTaskError, UserCodeException

from pipelines.data.errors import DataError, TaskDataError, find_in_chain, task_data_error

MESSAGE = "part-00000.parquet: row 2 (id 'c'): null, NaN or infinite value"


def _as_the_driver_gets_it(raised: BaseException) -> BaseException:
    """What ``ray.get`` raises for a task that raised ``raised``: the exception crosses a pickle, then comes
    back as ``RayTaskError(<its class>)`` with it as ``cause``."""
    cause = pickle.loads(pickle.dumps(raised))
    error = RayTaskError(
        "MapBatches(_audit)", "Traceback ...", cause, proctitle="ray::MapBatches", pid=1, ip="10.0.0.1"
    )
    return error.as_instanceof_cause()


class _WorkerGroupError(RuntimeError):
    """Like Ray Train's: the exception of each failed worker, by rank."""

    def __init__(self, failures: dict[int, BaseException]) -> None:
        super().__init__("training failed")
        self.worker_failures = failures


def test_a_task_data_error_comes_back_with_its_message_as_written():
    raised = TaskDataError(MESSAGE)
    raised.args = (f"{MESSAGE}\nFailed to apply UDF transform after 1/1 attempts",)  # Ray Data's retry advice
    found = task_data_error(_as_the_driver_gets_it(raised))
    assert type(found) is DataError
    assert str(found) == MESSAGE


def test_an_error_that_is_not_a_task_data_error_is_left_alone():
    wrapped = _as_the_driver_gets_it(UserCodeException("UDF failed to process a data block."))
    assert task_data_error(wrapped) is None
    assert task_data_error(RuntimeError(f"... DataError: {MESSAGE}")) is None  # text is never read


def test_find_in_chain_looks_through_causes_contexts_and_worker_failures():
    data_error = DataError(MESSAGE)
    try:
        raise RuntimeError("outer") from data_error
    except RuntimeError as exc:
        assert find_in_chain(exc, DataError) is data_error
    group = _WorkerGroupError({0: ValueError("other"), 1: data_error})
    assert find_in_chain(group, (KeyError, DataError)) is data_error
    assert find_in_chain(group, KeyError) is None
