"""SSL methods, each composable with the GH term; importing this package registers them."""

from geoharmony.methods import bcl as _bcl  # noqa: F401 - registers bcl
from geoharmony.methods import dnc as _dnc  # noqa: F401 - registers dnc
from geoharmony.methods import sdclr as _sdclr  # noqa: F401 - registers sdclr
from geoharmony.methods import simclr as _simclr  # noqa: F401 - registers simclr, focal
from geoharmony.methods.base import (
    METHODS,
    DataInfo,
    Method,
    StepOutput,
    TrainContext,
    build_method,
    register_method,
)
from geoharmony.methods.gh_term import GHTerm, build_prior

__all__ = [
    "METHODS",
    "DataInfo",
    "GHTerm",
    "Method",
    "StepOutput",
    "TrainContext",
    "build_method",
    "build_prior",
    "register_method",
]
