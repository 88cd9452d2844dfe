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


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people, json or yaml for scripts", case_sensitive=False)
]


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
