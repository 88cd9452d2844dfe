"""Every pattern that guards input matches the whole input.

`re.match` anchors only the start, and `$` also matches just before a final newline, so a guard
written `NAME.match(text)` with `^...$` lets `echo-upper\\n` through as a distinct, valid-looking name.
This reads the source (AST) of every Python module that takes input (services, afctl, mesh,
observability) and refuses:
  - `X.match(...)` on a module-level compiled pattern that does not end in `\\Z`;
  - a compiled pattern ending in `$` used with anything but `fullmatch` (re.M parsers excepted);
  - `re.match(...)`/`re.search(...)` with a literal pattern ending in `$`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("services", "afctl", "mesh", "observability")


def _sources() -> list[Path]:
    return sorted(p for root in ROOTS for p in (REPO / root).rglob("*.py") if "_pb2" not in p.name)


def _ends_with_dollar(pattern: str) -> bool:
    return pattern.endswith("$") and not pattern.endswith("\\$")


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # an f-string: its literal tail is what matters here
        tail = node.values[-1] if node.values else None
        return tail.value if isinstance(tail, ast.Constant) and isinstance(tail.value, str) else ""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.right)
    return None


def _is_re_call(node: ast.Call, names: tuple[str, ...]) -> bool:
    f = node.func
    return isinstance(f, ast.Attribute) and f.attr in names and isinstance(f.value, ast.Name) and f.value.id == "re"


def _multiline(node: ast.Call) -> bool:
    return any("re.M" in ast.unparse(a) or "MULTILINE" in ast.unparse(a) for a in [*node.args[1:], *node.keywords])


def _scan() -> tuple[dict[str, list[tuple[str, str, bool]]], list[tuple[str, str, str]], list[str]]:
    # name -> every (pattern, where, multiline) of that name: a use is checked against each (imports
    # carry names across modules, and two modules may reuse a name)
    compiled: dict[str, list[tuple[str, str, bool]]] = {}
    uses: list[tuple[str, str, str]] = []  # (name, method, where)
    problems: list[str] = []
    for path in _sources():
        rel = str(path.relative_to(REPO))
        tree = ast.parse(path.read_text(), rel)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and _is_re_call(node.value, ("compile",))
            ):
                pattern = _literal(node.value.args[0]) if node.value.args else None
                for target in node.targets:
                    if isinstance(target, ast.Name) and pattern is not None:
                        entry = (pattern, f"{rel}:{node.lineno}", _multiline(node.value))
                        compiled.setdefault(target.id, []).append(entry)
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if _is_re_call(node, ("match", "search")) and node.args:
                pattern = _literal(node.args[0])
                if pattern is not None and _ends_with_dollar(pattern):
                    problems.append(f"{rel}:{node.lineno}: re.{f.attr} with a pattern ending in '$'")  # type: ignore[attr-defined]
            if (
                isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name)
                and f.attr in ("match", "search", "fullmatch")
            ):
                uses.append((f.value.id, f.attr, f"{rel}:{node.lineno}"))
    return compiled, uses, problems


def test_every_guard_matches_whole_input() -> None:
    compiled, uses, problems = _scan()
    assert compiled, "found no compiled patterns: the scan is broken"
    for name, method, where in uses:
        if name not in compiled:
            continue
        for pattern, defined, multiline in compiled[name]:
            if method == "match" and not pattern.endswith("\\Z"):
                problems.append(f"{where}: {name}.match() is a prefix match ({defined}): use fullmatch or \\A...\\Z")
            if method != "fullmatch" and _ends_with_dollar(pattern) and not multiline:
                problems.append(f"{where}: {name} ends in '$' ({defined}), which also matches before a final newline")
    assert not problems, "\n".join(problems)


def test_the_scan_catches_what_it_is_for() -> None:
    assert _ends_with_dollar(r"^[a-z]+$") and not _ends_with_dollar(r"\A[a-z]+\Z") and not _ends_with_dollar(r"\$")
    # The bug class itself: both admit a trailing newline.
    assert re.compile(r"^[a-z]+$").match("echo\n")
    assert re.compile(r"\A[a-z]+\Z").match("echo\n") is None
