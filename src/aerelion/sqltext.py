"""Reading SQL text: split a migration into statements exactly as the Supabase CLI does,
and mask comments and literals so rules look only at code.

`split_statements` follows the state machine of the CLI's migration parser (statements
end at `;` outside quotes, comments, dollar quotes, parentheses and `BEGIN ATOMIC … END`;
each is kept as written, without its trailing `;`, trimmed; empty ones are dropped), so
the `statements` we record in `supabase_migrations.schema_migrations` equal the CLI's.
Its quirks are kept on purpose: parity matters more than elegance here.
"""

from __future__ import annotations

import re


class _State:
    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        raise NotImplementedError


def _window(text: str, start: int, end: int, size: int) -> str:
    return text[max(start, end - size) : end]


class _Ready(_State):
    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if ch == "$":
            return _Tag(end - 1)
        if ch in "'\"":
            return _Quote(ch)
        if ch == "-":
            return _LineComment()
        if ch == "/":
            return _Block()
        if ch == "\\":
            return _Escape()
        if ch == ";":
            return None  # end of statement
        if ch == "(":
            return _Nested(self, ")")
        if ch in "cC":
            offset = end - len("ATOMIC")
            if (
                offset > start
                and text[offset:end].upper() == "ATOMIC"
                and text[offset - 1].isspace()
            ):
                return _Nested(self, "END")
        return self


class _LineComment(_State):
    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if ch == "-":
            return _Dollar("\n")  # nothing is escaped until the end of the line
        return _Ready().next(ch, text, start, end)


class _Block(_State):
    def __init__(self) -> None:
        self.depth = 0

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        window = _window(text, start, end, 2)
        if window == "/*":
            self.depth += 1
            return self
        if self.depth == 0:
            return _Ready().next(ch, text, start, end)
        if window == "*/":
            self.depth -= 1
            if self.depth == 0:
                return _Ready()
        return self


class _Quote(_State):
    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.closing = False

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if self.closing:
            if ch == self.delimiter:  # a doubled quote stays inside
                self.closing = False
                return self
            return _Ready().next(ch, text, start, end)
        if ch == self.delimiter:
            self.closing = True
        return self


class _Dollar(_State):
    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if _window(text, start, end, len(self.delimiter)) == self.delimiter:
            return _Ready()
        return self


class _Tag(_State):
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        if ch == "$":
            return _Dollar(text[self.offset : end])
        if ch.isalpha() or ch.isdecimal() or ch == "_":
            return self
        return _Ready().next(ch, text, start, end)


class _Escape(_State):
    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        return _Ready()


class _Nested(_State):
    """Inside `( … )` or `BEGIN ATOMIC … END`: `;` does not end the statement."""

    def __init__(self, outer: _State, delimiter: str) -> None:
        self.inner: _State = outer
        self.delimiter = delimiter

    def next(self, ch: str, text: str, start: int, end: int) -> _State | None:
        current = self.inner.next(ch, text, start, end)
        if current is not None:
            self.inner = current
        if isinstance(self.inner, _Ready):
            window = _window(text, start, end, len(self.delimiter))
            if window.upper() == self.delimiter.upper():
                return _Ready()
        return self


def split_statements(text: str) -> list[str]:
    """The statements of a migration file, as the Supabase CLI records them."""
    tokens: list[str] = []
    state: _State = _Ready()
    start = 0
    for index, ch in enumerate(text):
        following = state.next(ch, text, start, index + 1)
        if following is None:
            tokens.append(text[start : index + 1])
            start = index + 1
            state = _Ready()
        else:
            state = following
    if start < len(text):
        tokens.append(text[start:])
    statements = []
    for token in tokens:
        trimmed = token.rstrip(";").strip()
        if trimmed:
            statements.append(trimmed)
    return statements


_MASK_TOKEN = re.compile(
    r"""
      (?P<line>--[^\n]*)
    | (?P<block>/\*.*?\*/)
    | (?P<estring>[eE]'(?:[^'\\]|\\.|'')*')
    | (?P<string>'(?:[^']|'')*')
    | (?P<ident>"(?:[^"]|"")*")
    | (?P<dollar>\$[A-Za-z_][A-Za-z0-9_]*\$|\$\$)
    """,
    re.VERBOSE | re.DOTALL,
)


def mask(statement: str, *, keep_identifiers: bool = False) -> str:
    """The statement with comments, string literals and (unless kept) quoted identifiers
    blanked.

    Dollar-quote delimiters are blanked but their bodies are kept and read as code:
    a PL/pgSQL body is code, and a rule must see a forbidden call inside a DO block.
    """

    def blank(match: re.Match[str]) -> str:
        if match.lastgroup in ("line", "block"):
            return " "
        if match.lastgroup == "ident":
            return match.group() if keep_identifiers else '""'
        if match.lastgroup == "dollar":
            return " "
        return "''"

    return _MASK_TOKEN.sub(blank, statement)
