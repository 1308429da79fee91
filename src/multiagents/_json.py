"""Fast JSON for data the engine has already checked (stored instances, commands).

orjson when it is installed (a dependency; it is an order of magnitude faster than the standard
library here, which matters because every transition is encoded once), the standard library
otherwise. User payloads are checked strictly by :func:`multiagents.messages.check_json` first:
orjson writes NaN as null, which is why it is never the first to see a worker's output.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads"]

try:
    import orjson
except ImportError:  # pragma: no cover - exercised only where orjson has no wheel

    def dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    def loads(text: str | bytes) -> Any:
        return json.loads(text)

else:

    def dumps(value: Any) -> str:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # an integer over 64 bits: valid JSON that only the standard library writes
            return json.dumps(value, separators=(",", ":"))

    def loads(text: str | bytes) -> Any:
        return orjson.loads(text)
