"""Errors raised for bad input; each names the file (and row where known)."""

from __future__ import annotations

from typing import TypeVar

from ray.exceptions import UserCodeException

ErrorT = TypeVar("ErrorT", bound=BaseException)


def find_in_chain(exc: BaseException, types: type[ErrorT] | tuple[type[ErrorT], ...]) -> ErrorT | None:
    """The first exception of ``types`` in ``exc``'s chain: ``__cause__``, ``__context__``, Ray's ``cause``
    and Ray Train's per-worker ``worker_failures`` (Ray wraps a task's error several times)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, types):
            return e
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            stack += list(failures.values())
    return None


class DataError(ValueError):
    """Input data that cannot be used, with the file (and row) that caused it in the message."""


class TaskDataError(DataError, UserCodeException):
    """A :class:`DataError` raised inside a Ray Data task, made to reach the driver as an object, not as text.

    By default Ray Data wraps a task's exception in ``UserCodeException`` and only the traceback's text
    reaches the driver. Where the dataset's ``DataContext.raise_original_map_exception`` is set, the exception
    itself travels: the driver gets ``RayTaskError(TaskDataError)`` with this one as its ``cause``. Being a
    ``UserCodeException`` too, Ray Data still logs it as an error in user code, not in Ray's own.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        #: the message as written: Ray Data appends its retry advice to ``args[0]`` on the way out of the task
        self.message = message


def task_data_error(exc: BaseException) -> DataError | None:
    """The :class:`TaskDataError` in ``exc``'s chain as a plain :class:`DataError` to raise on the driver (its
    message only, without Ray's traceback), or None."""
    found = find_in_chain(exc, TaskDataError)
    # a RayTaskError(TaskDataError) "contains all of the attributes of the cause" (RayTaskError.as_instanceof_cause)
    return None if found is None else DataError(found.message)
