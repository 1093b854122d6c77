"""SSL methods, each composable with the GH term; importing this package registers them.

A built-in method is one file here with ``@register_method("name")``; a method of your own,
in your own module, runs by import path: ``method.name=my_module:MyMethod``.
"""

# Imported in the order the registry lists them (tables and the quality study follow it): the
# paper's baseline first, then Focal, SDCLR, DnC and BCL.
from geoharmony.methods import simclr as _simclr  # noqa: F401, I001 - registers simclr
from geoharmony.methods import focal as _focal  # noqa: F401 - registers focal
from geoharmony.methods import sdclr as _sdclr  # noqa: F401 - registers sdclr
from geoharmony.methods import dnc as _dnc  # noqa: F401 - registers dnc
from geoharmony.methods import bcl as _bcl  # noqa: F401 - registers bcl
from geoharmony.methods.base import DataInfo, Method, StepOutput, TrainContext
from geoharmony.methods.registry import (
    METHODS,
    build_method,
    display_name,
    register_method,
    resolve_method,
)
from geoharmony.methods.simclr import SimCLR

__all__ = [
    "METHODS",
    "DataInfo",
    "Method",
    "SimCLR",
    "StepOutput",
    "TrainContext",
    "build_method",
    "display_name",
    "register_method",
    "resolve_method",
]
