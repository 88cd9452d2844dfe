"""How read commands print: a table for people, JSON or YAML (``-o json|yaml``) for scripts.

JSON and YAML use the protobuf JSON mapping (lowerCamelCase field names, enums by name, bytes in
base64), the same names grpcurl prints and every language's JSON codec reads.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.text import Text


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people, json or yaml for scripts", case_sensitive=False)
]


# Markup off: what afctl prints is mostly other people's text (an agent's log lines and failure reasons,
# audit actors, span status messages), and with markup on "[/b]" in it raised MarkupError and "[red]"
# vanished. Styles are applied with Text and style=, never by parsing the text.
console = Console(markup=False)
err = Console(stderr=True, markup=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line of plain strings and (string, style) pairs: nothing in it is read as markup."""
    return Text.assemble(*parts)


def as_data(messages: Message | Sequence[Message]) -> Any:
    if isinstance(messages, Message):
        return json_format.MessageToDict(messages)
    return [json_format.MessageToDict(m) for m in messages]


def emit(fmt: Format, messages: Message | Sequence[Message], table: Callable[[], None], console: Console) -> None:
    """Prints ``messages`` as ``fmt``; ``table`` draws the human view (only called for tables)."""
    if fmt is Format.table:
        table()
    elif fmt is Format.json:
        sys.stdout.write(json.dumps(as_data(messages), indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(as_data(messages), sort_keys=False, allow_unicode=True))
