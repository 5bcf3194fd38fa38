"""CloudWatch Logs filter patterns (a subset), evaluated against one log line.

No maintained Python library implements CloudWatch's pattern syntax, so this small
recursive-descent parser is written here. Supported: empty pattern; terms (`ERROR`,
`"quoted phrase"`, `?a ?b` for any, `-term` to exclude); JSON patterns
`{ $.a.b = "v" }` with `=`, `!=`, numeric `<`, `>`, `<=`, `>=`, `*` wildcards in
strings, `&&`, `||` and parentheses.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from typing import Any

from treadle.domain.errors import InvalidParameter

Matcher = Callable[[str], bool]


class LogFilterPatternError(InvalidParameter):
    """The pattern is not valid CloudWatch Logs filter syntax (as far as supported)."""


_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\))'
    r"|(?P<sel>\$(?:\.[A-Za-z0-9_\-]+|\[\d+\])+)|(?P<word>[^\s()=!<>&|\"]+))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise LogFilterPatternError(f"Invalid character in filter pattern at {pos}: {text}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _select(doc: Any, selector: str) -> Any:
    for part in re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]", selector):
        key, index = part
        if key:
            if not isinstance(doc, dict) or key not in doc:
                return _MISSING
            doc = doc[key]
        else:
            if not isinstance(doc, list) or int(index) >= len(doc):
                return _MISSING
            doc = doc[int(index)]
    return doc


_MISSING = object()


class _JsonParser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.t):
            raise LogFilterPatternError("Unexpected end of filter pattern.")
        tok = self.t[self.i]
        self.i += 1
        return tok

    def parse_or(self) -> Callable[[Any], bool]:
        left = self.parse_and()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.parse_and()
            left = (lambda a, b: lambda d: a(d) or b(d))(left, right)
        return left

    def parse_and(self) -> Callable[[Any], bool]:
        left = self.parse_atom()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.parse_atom()
            left = (lambda a, b: lambda d: a(d) and b(d))(left, right)
        return left

    def parse_atom(self) -> Callable[[Any], bool]:
        kind, value = self.take()
        if (kind, value) == ("op", "("):
            inner = self.parse_or()
            if self.take() != ("op", ")"):
                raise LogFilterPatternError("Missing ')' in filter pattern.")
            return inner
        if kind != "sel":
            raise LogFilterPatternError(f"Expected a $.selector, got {value!r}.")
        op_kind, op = self.take()
        if op_kind != "op" or op not in ("=", "!=", "<", ">", "<=", ">="):
            raise LogFilterPatternError(f"Expected a comparison after {value}, got {op!r}.")
        vkind, raw = self.take()
        if vkind == "str":
            literal: Any = json.loads(raw)
        elif vkind == "word":
            literal = raw
        else:
            raise LogFilterPatternError(f"Expected a value after {op}, got {raw!r}.")
        return _comparison(value, op, literal, quoted=vkind == "str")


def _comparison(selector: str, op: str, literal: Any, *, quoted: bool) -> Callable[[Any], bool]:
    def check(doc: Any) -> bool:
        actual = _select(doc, selector)
        if actual is _MISSING:
            return False
        if op in ("=", "!="):
            if isinstance(actual, bool | int | float) and not quoted:
                try:
                    equal = float(actual) == float(literal)
                except ValueError:
                    equal = str(actual).lower() == str(literal).lower()
            else:
                equal = (
                    fnmatch.fnmatchcase(str(actual), str(literal))
                    if "*" in str(literal)
                    else str(actual) == str(literal)
                )
            return equal if op == "=" else not equal
        try:
            a, b = float(actual), float(literal)
        except (TypeError, ValueError):
            return False
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]

    return check


def compile_pattern(pattern: str | None) -> Matcher:
    text = (pattern or "").strip()
    if not text:
        return lambda _line: True
    if text.startswith("{"):
        if not text.endswith("}"):
            raise LogFilterPatternError("A JSON filter pattern must end with '}'.")
        parser = _JsonParser(_tokens(text[1:-1]))
        predicate = parser.parse_or()
        if parser.peek() is not None:
            raise LogFilterPatternError(f"Unexpected {parser.peek()} in filter pattern.")

        def json_match(line: str) -> bool:
            stripped = line.strip()
            if not stripped.startswith("{"):
                return False
            try:
                doc = json.loads(stripped)
            except ValueError:
                return False
            return isinstance(doc, dict) and predicate(doc)

        return json_match
    return _term_matcher(text)


def _term_matcher(text: str) -> Matcher:
    terms = re.findall(r'[?-]?"(?:[^"\\]|\\.)*"|\S+', text)
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    for term in terms:
        prefix = term[0] if term[0] in "?-" else ""
        body = term[len(prefix) :]
        if body.startswith('"'):
            body = json.loads(body)
        {"?": optional, "-": excluded, "": required}[prefix].append(body)

    def match(line: str) -> bool:
        if any(t in line for t in excluded):
            return False
        if optional and not any(t in line for t in optional):
            return False
        return all(t in line for t in required)

    return match
