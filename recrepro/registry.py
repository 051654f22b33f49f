"""Registry of methods: ``@register_method("name")`` on a class in ``methods/`` makes it available by name."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from recrepro.method import Method

_METHODS: dict[str, type[Method]] = {}
_discovered = False


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a :class:`~recrepro.method.Method` subclass under ``name``."""

    def wrap(cls: type[Method]) -> type[Method]:
        if not issubclass(cls, Method):
            raise TypeError(f"{cls.__name__} must subclass recrepro.method.Method")
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method name {name!r} is already registered by {_METHODS[name].__qualname__}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def _discover() -> None:
    """Import every module of the ``methods`` package so that their decorators run."""
    global _discovered
    if _discovered:
        return
    import methods

    for module in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"methods.{module.name}")
    _discovered = True


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _discover()
    return sorted(_METHODS)


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    _discover()
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; registered methods: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]
