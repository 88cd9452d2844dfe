"""The example catalogue: every `template.json` under examples/, with its built module, parents first."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WASM_DIR = REPO / "build" / "wasm"


@dataclass(frozen=True)
class ExampleTemplate:
    name: str
    version: str
    extends: str
    manifest_path: Path
    module_path: Path | None  # None when the module is inherited

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def manifest_json(self) -> bytes:
        return self.manifest_path.read_bytes()

    def module(self) -> bytes | None:
        return self.module_path.read_bytes() if self.module_path else None

    def files(self) -> dict[str, bytes]:
        """Read-only template files: everything under the example's `files/` directory, at the same path
        below the guest's `/` (files/data/words.txt -> /data/words.txt)."""
        root = self.manifest_path.parent / "files"
        return {"/" + p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path, wasm_name: str) -> ExampleTemplate:
    data = json.loads(path.read_text())
    wasm = WASM_DIR / f"{wasm_name}.wasm"
    # .py: a generator script (examples.mk builds e.g. hostile-many-functions.wasm from one)
    has_source = any(p.suffix in (".wat", ".c", ".go", ".rs", ".py") for p in path.parent.iterdir())
    return ExampleTemplate(data["name"], data["version"], data.get("extends", ""), path, wasm if has_source else None)


def catalogue(kind: str = "agents") -> list[ExampleTemplate]:
    """Templates of one kind ("agents" or "hostile"), ordered so that parents come before children."""
    root = REPO / "examples" / kind
    prefix = "hostile-" if kind == "hostile" else ""
    found = {t.ref: t for t in (_load(p, prefix + p.parent.name) for p in sorted(root.glob("*/template.json")))}
    ordered: list[ExampleTemplate] = []

    def visit(template: ExampleTemplate) -> None:
        if template in ordered:
            return
        if template.extends in found:
            visit(found[template.extends])
        ordered.append(template)

    for template in found.values():
        visit(template)
    return ordered
