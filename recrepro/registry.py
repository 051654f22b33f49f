"""Registry of methods, by name: ``register("name", cls)`` or ``@register_method("name")`` in a module of
``methods/``. The registry imports every module of that package.

:func:`declared_requirements` reads which side inputs each method declares without importing anything (the
workflow needs it to build its job graph, and must not import torch for that): it parses the modules of
``methods/`` for their ``register`` calls and ``@register_method`` classes and reads the ``requires`` of the
add-on or class they name. A test checks that it agrees with the imported registry.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recrepro.method import Method

METHODS_DIR = Path(__file__).resolve().parent.parent / "methods"
_METHODS: dict[str, type[Method]] = {}
_discovered = False


def register(name: str, cls: type[Method]) -> type[Method]:
    """Make the :class:`~recrepro.method.Method` subclass ``cls`` available as ``name``."""
    from recrepro.method import Method

    if not issubclass(cls, Method):
        raise TypeError(f"{cls.__name__} must subclass recrepro.method.Method")
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"method name {name!r} is already registered by {_METHODS[name].__qualname__}")
    cls.name = name
    _METHODS[name] = cls
    return cls


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator form of :func:`register`."""
    return lambda cls: register(name, cls)


def _discover() -> None:
    """Import every module of the ``methods`` package so that their registrations run."""
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


# ------------------------------------------------------------------------------------- declarations, statically


def _class_requires(classes: dict[str, ast.ClassDef], name: str) -> tuple[str, ...]:
    """The literal ``requires`` of class ``name`` of one module, or of its first base there that has one."""
    cls = classes.get(name)
    if cls is None:
        return ()
    for statement in cls.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "requires" for target in statement.targets
        ):
            return tuple(ast.literal_eval(statement.value))
    for base in cls.bases:
        if isinstance(base, ast.Name) and (found := _class_requires(classes, base.id)):
            return found
    return ()


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def declared_requirements(directory: Path = METHODS_DIR) -> dict[str, tuple[str, ...]]:
    """Method name -> the side inputs it declares, read from the source of ``methods/`` (nothing is imported)."""
    out: dict[str, tuple[str, ...]] = {}
    for path in sorted(directory.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):  # @register_method("name")
                for decorator in node.decorator_list:
                    if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "register_method":
                        out[_string(decorator.args[0])] = _class_requires(classes, node.name)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "register":  # register("name", ...)
                name, built = _string(node.args[0]), node.args[1]
                addon = None
                if isinstance(built, ast.Call) and getattr(built.func, "id", "") == "graph_method":
                    addon = built.args[1].id if len(built.args) > 1 and isinstance(built.args[1], ast.Name) else None
                elif isinstance(built, ast.Name):
                    addon = built.id
                out[name] = _class_requires(classes, addon) if addon else ()
    return out
