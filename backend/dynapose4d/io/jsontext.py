"""JSON text from outside (uploads, user files) decoded within limits, with errors a user can act on.

Python's ``json`` trusts its input in ways that turn a small hostile file into an unexpected
exception rather than a clear refusal: a 5,000-digit integer hits the interpreter's int-digit
limit (ValueError), a 400-digit one becomes an int no float can hold (OverflowError later), 50,000
nested brackets exhaust the recursion limit (RecursionError), and ``NaN``/``Infinity`` are accepted
although they are not JSON. :func:`load_json` checks size, UTF-8, nesting depth and the length of
every number first, and raises :class:`JsonTextError` (a ValueError) naming the problem.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

MAX_DEPTH = 32  # our files nest 3 levels deep; 32 leaves room for any sensible extension
MAX_NUMBER_CHARS = 40  # digits, sign, point and exponent: a float64 needs 25 at most
DEFAULT_MAX_BYTES = 4 * 1024 * 1024

# A JSON string literal, matched possessively so that no input makes the scan backtrack.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.S)


class JsonTextError(ValueError):
    """JSON text that is refused: not UTF-8, malformed, too large, too deep, or a number out of range."""


def load_json(data: bytes | str, what: str = "JSON", *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = MAX_DEPTH):
    """Decode ``data`` (UTF-8 bytes or text) as standard JSON within the limits.

    Integers stay ints, other numbers become finite floats; ``what`` names the input in errors.
    """
    # 1. Size and encoding.
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise JsonTextError(f"{what} is {len(raw):,} bytes, more than the limit of {max_bytes:,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonTextError(f"{what} is not UTF-8 text (byte {exc.start} is {raw[exc.start:exc.start + 1]!r})") from None
    # 2. Nesting depth, counted outside string literals, before the recursive decoder sees it.
    depth = _max_depth(raw)
    if depth > max_depth:
        raise JsonTextError(f"{what} nests arrays/objects {depth} levels deep; at most {max_depth} are allowed")
    # 3. Decode; number literals are checked as the decoder meets them.
    try:
        return json.loads(text, parse_int=_parse_int(what), parse_float=_parse_float(what), parse_constant=_no_constant(what))
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except RecursionError:  # only reachable with a max_depth above the interpreter's limit
        raise JsonTextError(f"{what} nests too deeply to decode") from None


def _max_depth(raw: bytes) -> int:
    code = np.frombuffer(_STRING.sub(b'""', raw), np.uint8)
    step = np.isin(code, (0x5B, 0x7B)).astype(np.int64) - np.isin(code, (0x5D, 0x7D))
    return int(np.cumsum(step).max(initial=0))


def _check_length(literal: str, what: str) -> None:
    if len(literal) > MAX_NUMBER_CHARS:
        raise JsonTextError(f"{what} holds a number written with {len(literal):,} characters ({literal[:20]}...); at most {MAX_NUMBER_CHARS} are allowed")


def _parse_int(what: str):
    def parse(literal: str) -> int:
        _check_length(literal, what)
        return int(literal)

    return parse


def _parse_float(what: str):
    def parse(literal: str) -> float:
        _check_length(literal, what)
        value = float(literal)
        if not math.isfinite(value):
            raise JsonTextError(f"{what} holds the number {literal}, which is too large for a 64-bit float")
        return value

    return parse


def _no_constant(what: str):
    def parse(name: str):
        raise JsonTextError(f"{what} holds {name}, which is not standard JSON; write a finite number or null")

    return parse

