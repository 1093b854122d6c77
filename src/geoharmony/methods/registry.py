"""The method registry: the one list of built-in methods, and user methods by import path.

A built-in method is one file in this package whose class carries ``@register_method("name")``;
``method.name`` accepts the registered names and ``module:Class`` (a :class:`Method` subclass in
the user's own module, imported when the configuration is read). Each method may declare its
options as a dataclass (``Options``); the configuration then has a section ``method.<name>``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from geoharmony.config import Config, ConfigError
from geoharmony.methods.base import DataInfo, Method

__all__ = [
    "METHODS",
    "build_method",
    "display_name",
    "option_sections",
    "register_method",
    "resolve_method",
]

METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a method to :data:`METHODS` under ``name``."""

    def add(cls: type[Method]) -> type[Method]:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = cls
        cls.registered_name = name
        return cls

    return add


def _builtins() -> None:
    """Importing the package registers the built-in methods."""
    importlib.import_module("geoharmony.methods")


def _import_class(path: str) -> type[Method]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"method.name={path!r}: an import path looks like module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"method.name={path!r}: cannot import {module_name!r} ({err})") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"method.name={path!r}: module {module_name!r} has no {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ConfigError(
            f"method.name={path!r}: {attr} is not a subclass of geoharmony.methods.Method"
        )
    return cls


def resolve_method(name: str) -> type[Method]:
    """The class ``method.name`` names: a registered name or ``module:Class``.

    Raises:
        ConfigError: neither, naming the registered methods.
    """
    _builtins()
    if name in METHODS:
        return METHODS[name]
    if ":" in name:
        return _import_class(name)
    raise ConfigError(
        f"method.name={name!r} is not one of {', '.join(sorted(METHODS))} "
        "(or module:Class for a method of your own)"
    )


def display_name(name: str) -> str:
    """How tables print a method (``simclr`` -> ``SimCLR``); unknown names as they are."""
    _builtins()
    cls = METHODS.get(name)
    return cls.display_name if cls is not None and cls.display_name else name


def option_sections(name: str) -> dict[str, type]:
    """``{section: options dataclass}`` of every registered method, plus ``name``'s own (a
    ``module:Class`` method's section is its class name)."""
    cls = resolve_method(name)
    sections = {n: m.Options for n, m in METHODS.items() if m.Options is not None}
    if cls.Options is not None:
        sections[cls.name_of()] = cls.Options
    return sections


def build_method(cfg: Config, data: DataInfo, distributed: bool = False) -> Method:
    """Instantiate the method ``cfg.method.name`` names (registered, or ``module:Class``)."""
    return resolve_method(cfg.method.name)(cfg, data, distributed)
