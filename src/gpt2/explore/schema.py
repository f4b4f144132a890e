"""The JSON Schema of the API's answers (`schema.json`, JSON Schema 2020-12), and a checker.

Each answer has a definition under `$defs`: trace, next, step, neighbours, positions,
bpe, compare, source, info and error. The tests validate every answer they receive
against it (with the `jsonschema` package); other programs can do the same.

>>> sorted(load_schema()["$defs"])[:4]
['attention', 'bpe', 'candidate', 'compare']
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_FILE", "ANSWERS", "load_schema", "validate"]

SCHEMA_FILE = Path(__file__).resolve().parent / "schema.json"
ANSWERS = ("trace", "next", "step", "neighbours", "positions", "bpe", "compare", "source", "info", "error")


@functools.cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def validate(answer: Any, kind: str) -> None:
    """Raise `jsonschema.ValidationError` unless `answer` is a valid `kind` answer (needs jsonschema)."""
    import jsonschema

    if kind not in ANSWERS:
        raise ValueError(f"unknown answer kind {kind!r}; choose one of {', '.join(ANSWERS)}")
    schema = load_schema()
    jsonschema.validate(answer, {"$ref": f"#/$defs/{kind}", "$defs": schema["$defs"]})
