"""Errors raised for bad input; each names the file (and row where known)."""

from __future__ import annotations


def find_in_chain(exc: BaseException, types: type | tuple[type, ...]) -> BaseException | None:
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
