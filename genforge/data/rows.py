"""Rows of JSONL files, with 'FILE:LINE' beside each, for every reader that takes one (text, captions).

    for where, obj in json_lines(open(path), path): ...

Blank lines are skipped; a line that is not JSON is an error naming the file and line. What a
row must hold (an object, which fields) is the caller's to check, so each keeps its own message.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from os import PathLike


def json_lines(lines: Iterable[str], path: str | PathLike) -> Iterator[tuple[str, object]]:
    """(where, value) for each non-blank line, where = 'FILE:LINE' (lines counted from 1)."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        yield f"{path}:{lineno}", value
