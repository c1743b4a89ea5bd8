"""Typed partial updates: the fields of a stored record that change, and nothing else.

An update is a frozen dataclass whose every field defaults to `KEEP`. `None` is a value like any
other (it clears a column), so "leave this column alone" needs a marker of its own.
"""

from __future__ import annotations

from dataclasses import fields, replace
from enum import Enum
from typing import Any, Final, Self


class Keep(Enum):
    """The type of `KEEP`: a field left as the record has it."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


class PartialUpdate:
    """Behaviour shared by the update dataclasses (which declare only their fields)."""

    def changes(self) -> dict[str, Any]:
        """Field name → new value, for the fields that are set."""
        return {
            field.name: getattr(self, field.name)
            for field in fields(self)  # type: ignore[arg-type]
            if getattr(self, field.name) is not KEEP
        }

    @property
    def is_empty(self) -> bool:
        return not self.changes()

    def merged(self, later: Self) -> Self:
        """This update with every field ``later`` sets applied over it."""
        return replace(self, **later.changes())  # type: ignore[type-var]

    def against(self, record: object) -> Self:
        """Only the fields whose new value differs from what ``record`` already holds."""
        same = {name: KEEP for name, value in self.changes().items() if getattr(record, name) == value}
        return replace(self, **same)  # type: ignore[type-var]
