"""Command-line values typer would hand to pydantic, converted without it when that is plain.

typer (0.29) coerces every parameter's value through a pydantic ``TypeAdapter``
built per parameter on every run: importing pydantic and building ~30
adapters costs ~80 ms of CPU before ``remoteops run`` connects anywhere
(0.4 ms per host on 200 hosts). Most values need no conversion at all: a
default that already has its type, a string for a ``str`` option, strings
for a ``list[str]`` one, digits for an ``int``. :func:`install` gives each
parameter a coercion that returns those exactly as pydantic would and hands
every other value (a ``Path``, ``-f abc``, a float given as text) to the
pydantic adapter typer builds, built on first need, so results and error
messages are typer's own. While a shell completes a line
(:func:`keep_as_typed`), every value stays as typed, through the same hook.

It uses typer internals (``typer._coercion``, a parameter's ``_runtime_param``
and ``type_descriptor``); if a typer release lacks them, :func:`install` does
nothing and typer works as it always does. tests/unit/test_cliparams.py fails
loudly when that happens, and checks the results against typer's own.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

__all__ = ["install", "keep_as_typed", "quick_value"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Mode:
    as_typed: bool = False
    """Every value stays as typed: :func:`keep_as_typed`."""


_MODE = _Mode()


def keep_as_typed() -> None:
    """From now on, every parameter's value stays the string it was typed as.

    For a shell completing a line: click parses what is typed so far, and
    completing needs only the strings (``-i`` for host names); converting them
    would import pydantic (~70 ms a Tab) and fail on half-typed values. Takes
    effect through :func:`install`'s hook, for parameters not converted yet.
    """
    _MODE.as_typed = True


_NO_QUICK = object()
_MAX_DIGITS = 18  # int() of up to 18 digits is the value pydantic gives, never an overflow


def quick_value(annotation: Any, value: Any) -> Any:
    """``value`` as typer's pydantic adapter would give it, or ``_NO_QUICK`` to ask it.

    Only where the answer is certain: a value of exactly the annotated type
    (``str``, ``int``, ``float``, ``bool``) is returned as is; ASCII digits
    without a leading zero for ``int``, and with one ``.`` and more digits for
    ``float``; strings for ``list[str]`` (a list, as pydantic returns).
    """
    kind = type(value)
    if annotation in (str, int, float, bool):
        if kind is annotation:
            return value
        if kind is not str or annotation not in (int, float):
            return _NO_QUICK
        whole, dot, fraction = value.partition(".") if annotation is float else (value, "", "")
        if _digits(whole) and (not dot or _digits(fraction, leading_zero=True)):
            return annotation(value)
        return _NO_QUICK
    if annotation == list[str] and kind in (list, tuple) and all(type(v) is str for v in value):
        return list(value)
    return _NO_QUICK


def _digits(text: str, *, leading_zero: bool = False) -> bool:
    """1 to 18 ASCII digits, without a leading zero unless asked (or the number is 0)."""
    return (
        0 < len(text) <= _MAX_DIGITS
        and text.isascii()
        and text.isdigit()
        and (leading_zero or text == "0" or text[0] != "0")
    )


@functools.cache
def install() -> bool:
    """Give every typer parameter without a coercion yet the quick one (once per process);
    after :func:`keep_as_typed`, one that keeps every value as typed.

    Parameters typer makes later (``--help``) get it too. False if this typer
    lacks what it needs: typer then coerces as it always does.
    """
    try:
        from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
        from typer.core import _TyperParameter
    except ImportError:
        logger.debug("typer without typer._coercion: parameters coerced by typer alone")
        return False
    original = getattr(_TyperParameter, "get_runtime_param", None)
    if original is None or "_runtime_param" not in getattr(_TyperParameter, "__annotations__", {}):
        logger.debug("typer without get_runtime_param: parameters coerced by typer alone")
        return False

    @dataclass(frozen=True)
    class QuickParam(RuntimeParam):
        """typer's RuntimeParam (same None and multi-value rules) with the quick conversion."""

        descriptor: TypeDescriptor | None = None
        built: list[Any] = field(default_factory=list)
        as_typed: bool = False

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.as_typed:
                return value
            quick = quick_value(self.annotation, value)
            if quick is not _NO_QUICK:
                return quick
            if not self.built:
                assert self.descriptor is not None
                self.built.append(build_runtime_param(self.descriptor))
            return self.built[0]._coerce_value(value, param=param, ctx=ctx)

    def plain(descriptor: TypeDescriptor) -> bool:
        return not (
            descriptor.is_file
            or descriptor.is_ranged
            or descriptor.is_choice
            or descriptor.parameter_info.parser is not None
        )

    def get_runtime_param(self: Any) -> Any:
        descriptor = self.type_descriptor
        if self._runtime_param is None and (_MODE.as_typed or plain(descriptor)):
            self._runtime_param = QuickParam(
                parameter_info=descriptor.parameter_info,
                annotation=descriptor.annotation,
                descriptor=descriptor,
                as_typed=_MODE.as_typed,
            )
        return original(self)

    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
    return True
