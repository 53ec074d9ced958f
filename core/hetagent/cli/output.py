"""Shared output: rich tables for people, `--json` for programs, warnings on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from hetagent.errors import HetagentError

console = Console()
console_err = Console(stderr=True)


def print_json(data: Any) -> None:
    """Strict JSON (NaN and infinities are not JSON: a figure that is not finite is an error, not output)."""
    try:
        text = json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError as exc:
        raise HetagentError(f"the result holds a number that is not finite ({exc}); nothing printed") from None
    sys.stdout.write(text + "\n")


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[escape(_cell(v)) for v in row])
    if console.is_terminal:
        console.print(table)
    else:  # piped or captured: print at the table's natural width rather than folding cells at 80 columns
        natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
        Console(file=sys.stdout, width=min(natural, 400)).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if value < 1000 else f"{value:,.0f}"
    return str(value)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    console_err.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True)


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
