"""Name -> model class registry, filled by the ``@register`` decorator.

Loading a saved model is a dict lookup on the name stored in its config, never an if/elif chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from aecore.base import Autoencoder

_REGISTRY: dict[str, type[Autoencoder]] = {}

M = TypeVar("M", bound="type[Autoencoder]")


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make ``cls`` buildable under ``name``; a duplicate name is an error."""

    def wrap(cls: M) -> M:
        if name in _REGISTRY:
            raise ValueError(
                f"model name {name!r} is already registered by {_REGISTRY[name].__name__}; "
                f"known names: {', '.join(known_models())}"
            )
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_families() -> None:
    import aecore.models  # noqa: F401  (importing the package registers every family)


def known_models() -> list[str]:
    """Sorted list of every registered model name."""
    _load_families()
    return sorted(_REGISTRY)


def model_class(name: str) -> type[Autoencoder]:
    """The class registered under ``name``; raises :class:`UnknownModelError` listing known names."""
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def describe_models() -> dict[str, str]:
    """``{name: one-line description}`` for every registered family (first docstring line)."""
    _load_families()
    return {
        name: (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        for name, cls in sorted(_REGISTRY.items())
    }
