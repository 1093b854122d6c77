"""Reading a run configuration: YAML presets, ``key=value`` overrides and stored configs, merged
onto the schema of :mod:`geoharmony.config` and strictly typed.

An unknown key or a value of the wrong type is an error that names it; so is a value out of its
range (each section's ``problems()``, checked here, once). Presets may ``defaults: [other.yaml]``
to inherit from a file next to them. Keys of earlier versions are read in their new places.

This module sits above the data and methods layers: it asks the method registry for the
``method.<name>`` sections and the data sources for the profile ``auto`` resolves to. Both are
imported where they are used, since importing the method package registers every method, whose
modules use :func:`load_config`'s results.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from geoharmony.config import Config, ConfigError, MethodConfig, to_dict

T = TypeVar("T")

__all__ = [
    "config_schema",
    "from_dict",
    "load_config",
    "read_preset",
    "typed_merge",
    "validate_choices",
]


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a preset, resolving its ``defaults`` list of parent files (relative to it)."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular 'defaults' chain")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    parents = data.pop("defaults", [])
    merged: dict[str, Any] = {}
    for parent in parents if isinstance(parents, list) else [parents]:
        merged = _deep_merge(merged, _read_yaml(path.parent / str(parent), (*seen, path)))
    return _deep_merge(merged, data)


def read_preset(path: str | Path) -> dict[str, Any]:
    """A YAML preset as a dict, its ``defaults`` parents merged under it."""
    return _read_yaml(Path(path))


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def validate_choices(node: Any, prefix: str = "") -> None:
    """Every field declared with :func:`choice` holds one of its values (recursively)."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        allowed = f.metadata.get("choices")
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{prefix}{f.name}={value!r} is not one of {', '.join(allowed)}")
        if dataclasses.is_dataclass(value):
            validate_choices(value, f"{prefix}{f.name}.")


# One schema class per set of method sections, kept importable by name so configs pickle.
_SCHEMAS: dict[tuple[tuple[str, type], ...], type[Config]] = {}


def config_schema(method_name: str = "simclr") -> type[Config]:
    """The :class:`Config` schema with a ``method.<name>`` section for every registered
    method's options, plus ``method_name``'s own if it is a ``module:Class`` path.

    Raises:
        ConfigError: ``method_name`` is neither registered nor an importable method class.
    """
    # The registry imports this module; it is only needed once a config is being read.
    from geoharmony.methods.registry import option_sections

    sections = tuple(sorted(option_sections(method_name).items()))
    if sections not in _SCHEMAS:
        number = len(_SCHEMAS)
        method = dataclasses.make_dataclass(
            f"_MethodConfig{number}",
            [(name, options, field(default_factory=options)) for name, options in sections],
            bases=(MethodConfig,),
        )
        schema = dataclasses.make_dataclass(
            f"_Config{number}", [("method", method, field(default_factory=method))], bases=(Config,)
        )
        for cls, shown in ((method, "MethodConfig"), (schema, "Config")):
            # Errors name the class as users know it; pickle finds it by its unique qualname.
            cls.__module__, cls.__qualname__ = __name__, cls.__name__
            globals()[cls.__name__] = cls
            cls.__name__ = shown
        _SCHEMAS[sections] = schema
    return _SCHEMAS[sections]


def typed_merge(schema: type[T], layers: Sequence[tuple[str, Any]]) -> T:
    """``schema``'s defaults <- each ``(source, mapping)`` layer in turn, as a ``schema``
    instance whose every :func:`choice` field holds one of its values.

    Raises:
        ConfigError: an unknown key, a wrong type or a bad choice, naming the layer's source.
    """
    cfg = OmegaConf.structured(schema)
    source = "defaults"
    try:
        for layer_source, layer in layers:
            source = layer_source  # the culprit, should the merge fail
            cfg = OmegaConf.merge(cfg, layer)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{source}: invalid key or value '{key}': {err.msg}") from None
    result = OmegaConf.to_object(cfg)
    assert isinstance(result, schema)
    validate_choices(result)
    return result


def _method_name(layers: list[tuple[str, DictConfig]], default: str) -> str:
    """The ``method.name`` the last layer that sets one asks for."""
    name = default
    for _, layer in layers:
        value = OmegaConf.select(layer, "method.name", default=None)
        if value is not None:
            name = str(value)
    return name


def _merged(
    layers: list[tuple[str, DictConfig]], base: dict[str, Any] | None, default_name: str
) -> Config:
    """``base`` <- each layer, on the schema of the method the layers name; strictly typed."""
    schema = config_schema(_method_name(layers, default_name))
    stored: list[tuple[str, Any]] = [] if base is None else [("stored config", base)]
    result = typed_merge(schema, [*stored, *layers])
    problems = result.gh.problems()
    for section in dataclasses.fields(result.method):  # each method's own options section
        options = getattr(result.method, section.name)
        if hasattr(options, "problems"):
            problems += options.problems(f"method.{section.name}")
    if problems:
        raise ConfigError("; ".join(problems))
    from geoharmony.data.longtail import PROFILES
    from geoharmony.data.sources import default_profile

    if result.data.profile not in ("auto", "none", *PROFILES):
        valid = ", ".join(("auto", "none", *PROFILES))
        raise ConfigError(f"data.profile={result.data.profile!r} is not one of {valid}")
    # Stored configs name the profile as run: a record made before ``auto`` existed compares
    # equal to a fresh config that resolves to the same profile (resuming it stays allowed).
    result.data.profile = default_profile(result.data)
    return result


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: Config | None = None,
) -> Config:
    """``base`` (default: the schema's defaults) <- preset file (if any) <- ``key=value``
    overrides, strictly typed.

    Raises:
        ConfigError: unknown key, wrong type, bad choice, unknown method, unreadable file.
    """
    layers: list[tuple[str, DictConfig]] = []
    try:
        if path is not None:
            layers.append(
                (str(path), OmegaConf.create(_migrated(_read_yaml(Path(path)), str(path))))
            )
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key=value")
            source = f"override {item!r}"
            parsed = OmegaConf.to_container(OmegaConf.from_dotlist([item]))
            assert isinstance(parsed, dict)
            plain = {str(k): v for k, v in parsed.items()}
            layers.append((source, OmegaConf.create(_migrated(plain, source))))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{layers[-1][0] if layers else path}: {err.msg}") from None
    stored = to_dict(base) if base is not None else None
    return _merged(layers, stored, base.method.name if base is not None else "simclr")


# Keys of configs written for earlier versions (stored configs, presets, overrides), and where
# they live now. ``gh.allocation`` and ``gh.prior`` were names; they are sections now, and a
# name given for them is their ``name``.
_MOVED_KEYS = {
    "method.focal_gamma": "method.focal.gamma",
    "gh.allocation": "gh.allocation.name",
    "gh.epsilon": "gh.allocation.epsilon",
    "gh.sinkhorn_iters": "gh.allocation.iterations",
    "gh.sinkhorn_tol": "gh.allocation.tolerance",
    "gh.marginal_tau": "gh.allocation.tau",
    "gh.partial_start": "gh.allocation.partial_start",
    "gh.partial_end": "gh.allocation.partial_end",
    "gh.partial_ramp": "gh.allocation.partial_ramp",
    "gh.partial_targets": "gh.allocation.partial_targets",
    "gh.partial_dummy_temperature": "gh.allocation.dummy_temperature",
    "gh.prior": "gh.prior.name",
    "gh.bank_warmup_momentum": "gh.prior.warmup_momentum",
    "gh.bank_momentum": "gh.prior.momentum",
    "gh.prior_floor": "gh.prior.floor",
    "gh.prior_refresh_every": "gh.prior.refresh_every",
    "gh.streaming_momentum": "gh.prior.streaming_momentum",
}
# GH options retired on 2026-12-07 (none narrowed the tail's deficit in the quality study; the
# records made with them name their commits). A stored config that holds one at its "off"
# value (None: any value, the option did nothing alone) still loads; any other value is refused.
_RETIRED_KEYS: dict[str, Any] = {
    "gh.queue_batches": 0,
    "gh.affinity": 0.0,
    "gh.affinity_neighbours": None,
    "gh.affinity_source": None,
    "gh.plan_momentum": None,
    "gh.powerlaw_exponent": None,
}
_RETIRED_PRIORS = ("uniform", "mixture", "plan", "powerlaw")
_RETIRED_AT = "retired on 2026-12-07; geoharmony at commit 670bf1c still has it"


def _pop_path(data: dict[str, Any], path: str) -> tuple[bool, Any]:
    """Remove the value at dotted ``path`` of nested ``data``: (whether it was there, value)."""
    *parents, leaf = path.split(".")
    node: Any = data
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
        return False, None
    return True, node.pop(leaf)


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _migrated(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """A copy of nested ``data`` with every moved key in its new place.

    Raises:
        ConfigError: a retired option set to anything but "off", naming it.
    """
    out = copy.deepcopy(data)
    for old, new in _MOVED_KEYS.items():
        found, value = _pop_path(out, old)
        if found and isinstance(value, dict):  # already the new section
            _set_path(out, old, value)
        elif found:
            _set_path(out, new, value)
    for key, off in _RETIRED_KEYS.items():
        found, value = _pop_path(out, key)
        if found and off is not None and value != off:
            raise ConfigError(f"{source}: {key}={value!r}: this option was {_RETIRED_AT}")
    name = (
        out.get("gh", {}).get("prior", {}).get("name") if isinstance(out.get("gh"), dict) else None
    )
    if name in _RETIRED_PRIORS:
        raise ConfigError(f"{source}: gh.prior.name={name}: this prior was {_RETIRED_AT}")
    return out


def from_dict(data: dict[str, Any]) -> Config:
    """Inverse of :func:`to_dict` (strict: unknown keys are errors); also reads the configs
    earlier versions stored (moved keys are carried to their new place)."""
    data = _migrated(data, "stored config")
    name = str((data.get("method") or {}).get("name", "simclr"))
    try:
        return _merged([], data, name)
    except ConfigError as err:
        raise ConfigError(f"stored config is invalid: {err}") from None
