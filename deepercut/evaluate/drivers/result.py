"""What an evaluation returns: :class:`EvalResult`, its report and the tables presenting it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EvalResult:
    """One evaluation's outcome. The drivers print nothing: ``deepercut eval`` prints
    :meth:`text` and writes ``report`` as JSON.

    Attributes:
        report: the JSON report (scores, settings, timings).
        tables: the report for people: titles and tables, in order, one string each (a string
            may span lines).
    """

    report: dict[str, Any]
    tables: tuple[str, ...] = field(default=())

    def text(self) -> str:
        """The tables as one text, as they are printed."""
        return "\n".join(self.tables)
