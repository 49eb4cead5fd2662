"""Checked reading of a backend's option values, with one wording for every complaint.

Each backend's `parse_options` reads its values through an `OptionValues`, so that an unknown key
or a bad value reads the same whichever backend it was given to:

    <owner>: unknown option 'x'; valid: a, b
    <owner>: option 'k': <value> must be an integer >= 0 | must be true or false | ...

It runs when the experiment file is read, so it imports no engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from perflab.errors import SpecError
from perflab.options import Option


class OptionValues:
    """The values given to one backend, read key by key against `defaults` (a key not given
    takes its default). With `none_passes`, an integer option given as null stays None (the
    engine's own choice) instead of being refused."""

    def __init__(
        self,
        owner: str,
        values: Mapping[str, Any],
        defaults: Mapping[str, Any],
        none_passes: bool = False,
    ):
        self.owner = owner
        self.values = values
        self.defaults = defaults
        self.none_passes = none_passes

    def reject_unknown(self, valid: Sequence[str], notes: Mapping[str, str] | None = None) -> None:
        """SpecError for the first given key that is not in `valid`; `notes` adds a word about
        a key (why it is not valid here)."""
        for key in self.values:
            if key not in valid:
                note = (notes or {}).get(key, "")
                raise SpecError(
                    f"{self.owner}: unknown option {key!r}{note}; valid: {', '.join(valid)}"
                )

    def get(self, key: str) -> Any:
        return self.values.get(key, self.defaults.get(key))

    def integer(self, key: str, lo: int, hi: int | None = None) -> Any:
        v = self.get(key)
        if v is None and self.none_passes:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            span = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise self.bad(key, v, f"must be an integer {span}")
        return v

    def number(self, key: str, lo: float) -> float:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
            raise self.bad(key, v, f"must be a number >= {lo:g}")
        return float(v)

    def boolean(self, key: str, allow_none: bool = False) -> Any:
        v = self.get(key)
        if not (isinstance(v, bool) or (allow_none and v is None)):
            raise self.bad(key, v, "must be true or false")
        return v

    def choice(self, key: str, choices: Iterable[str]) -> str:
        v = self.get(key)
        if v not in choices:
            raise self.bad(key, v, f"is not one of {', '.join(choices)}")
        return v

    def bad(self, key: str, value: Any, why: str) -> SpecError:
        """The complaint about one value, for checks the methods above do not cover."""
        return SpecError(f"{self.owner}: option {key!r}: {value!r} {why}")


def declared_defaults(declared: Iterable[Option]) -> dict[str, Any]:
    """Each declared option's default, by name."""
    return {o.name: o.default for o in declared}


def parse_whole_numbers(
    owner: str, options: Mapping[str, Any], declared: Sequence[Option], least: Mapping[str, int]
) -> dict[str, int]:
    """The options of a backend whose options are all whole numbers (thread counts, time
    limits), each at least its `least` value, unset ones at their declared defaults."""
    values = OptionValues(owner, options, declared_defaults(declared))
    values.reject_unknown([o.name for o in declared])
    return {key: values.integer(key, lo) for key, lo in least.items()}
