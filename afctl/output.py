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
from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.style import Style
from rich.text import Text


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people, json or yaml for scripts", case_sensitive=False)
]


# Control characters other than tab and newline (C0, DEL, C1) as visible escapes: ESC starts a terminal
# escape sequence (an agent's reason could clear the screen, retitle the window, set the clipboard with
# OSC 52, or hide text), C1's CSI and OSC do the same on some terminals, CR and BS overwrite what is shown.
_CONTROLS = {c: (f"\\x{c:02x}" if c < 0x80 else f"\\u{c:04x}") for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
del _CONTROLS[ord("\t")], _CONTROLS[ord("\n")]


def printable(text: str) -> str:
    """`text` safe to write to a terminal: control characters other than tab and newline escaped, and a
    lone surrogate (a JSON file's "\\udcff") escaped instead of failing the print with UnicodeEncodeError."""
    text = text.translate(_CONTROLS)
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if not text.isascii() else text


class PlainConsole(Console):
    """A Console for other people's text: no markup, no :emoji: codes, control characters escaped. Every
    string it prints, itself or in a table cell, goes through render_str."""

    def __init__(self, *, stderr: bool = False) -> None:
        super().__init__(stderr=stderr, markup=False, emoji=False)

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        return super().render_str(
            printable(text),
            style=style,
            justify=justify,
            overflow=overflow,
            emoji=False,
            markup=False,
            highlight=highlight,
            highlighter=highlighter,
        )


# Markup off: what afctl prints is mostly other people's text (an agent's log lines and failure reasons,
# audit actors, span status messages), and with markup on "[/b]" in it raised MarkupError and "[red]"
# vanished; with emoji codes on ":x:" became an emoji; and an escape sequence reached the terminal as it
# was. Styles are applied with Text and style=, never by parsing the text.
console = PlainConsole()
err = PlainConsole(stderr=True)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line of plain strings and (string, style) pairs: nothing in it is read as markup, and control
    characters are escaped (printable())."""
    return Text.assemble(*(printable(p) if isinstance(p, str) else (printable(p[0]), p[1]) for p in parts))


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
