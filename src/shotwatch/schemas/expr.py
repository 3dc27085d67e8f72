"""Channel expressions (INTERFACE.md ``[[channel]]``): parsed once into a whitelisted tree.

The text goes through :func:`ast.parse` (never ``eval``) and every node is checked against a
short list: numbers, names, ``+ - * /``, unary minus, parentheses, the calls ``abs sqrt log
exp min max`` and ``pixels(ROI)``. Anything else (attributes, subscripts, ``**``, keywords,
comparisons, strings) is refused with the column where it starts. The tree is plain frozen
dataclasses; the reducers evaluate it with numpy, this module does no arithmetic.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "FUNCTIONS", "IDENTIFIER", "RESERVED", "Bin", "Call", "ExprError", "Name", "Neg", "Node", "Num",
    "Pixels", "names", "parse",
]

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
"""A name usable in an expression."""
RESERVED = frozenset({"tag", "time", "i0", "accepted", "scan", "laser_on"})
"""Column names of ``reduce --per-shot``: never an ROI, alias or channel name."""
FUNCTIONS = {"abs": 1, "sqrt": 1, "log": 1, "exp": 1, "min": 2, "max": 2}
"""Function -> least number of arguments (min and max take two or more, the others one)."""
MAX_LENGTH = 1000  # characters: a sum of 16 diodes is ~300
MAX_DEPTH = 64  # nesting: keeps the recursive walkers far from Python's recursion limit
_ALLOWED = re.compile(r"[A-Za-z0-9_ \t+\-*/().,]")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class ExprError(ValueError):
    """An expression that is not one: ``expected …, found …`` with the 1-based column."""

    def __init__(self, expected: str, found: str, column: int | None) -> None:
        where = f" at column {column}" if column is not None else " at the end"
        super().__init__(f"expected {expected}{where}, found {found}")
        self.column = column


@dataclass(frozen=True)
class Num:
    """A number literal."""

    value: float
    col: int


@dataclass(frozen=True)
class Name:
    """An ROI name, an alias or an earlier channel (resolved by the caller)."""

    name: str
    col: int


@dataclass(frozen=True)
class Pixels:
    """``pixels(ROI)``: the area of the ROI's rectangle at each shot."""

    roi: str
    col: int


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    arg: Node
    col: int


@dataclass(frozen=True)
class Bin:
    """``left op right`` with op one of ``+ - * /``."""

    op: str
    left: Node
    right: Node
    col: int


@dataclass(frozen=True)
class Call:
    """One of :data:`FUNCTIONS` applied to its arguments."""

    func: str
    args: tuple[Node, ...]
    col: int


Node = Num | Name | Pixels | Neg | Bin | Call


def parse(text: str) -> Node:
    """The tree of ``text``; raises :class:`ExprError` naming the column of the first fault."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"at most {MAX_LENGTH} characters", f"{len(text)}", None)
    for i, ch in enumerate(text):
        if not _ALLOWED.match(ch):
            raise ExprError("names, numbers, + - * / ( ) and function calls", repr(ch), i + 1)
    body = text.lstrip()
    shift = len(text) - len(body)
    if not body.strip():
        raise ExprError("an expression", "nothing", None)
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        col = exc.offset + shift if exc.offset and 1 <= exc.offset <= len(body) else None
        found = repr(text[col - 1]) if col is not None else "the end of the text"
        raise ExprError(f"a complete expression ({exc.msg})", found, col) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError(f"an expression nested at most {MAX_DEPTH} deep", "deeper nesting", None) from None
    return _Builder(body, shift).build(tree, 0)


def names(node: Node) -> Iterator[Name | Pixels]:
    """Every name and ``pixels()`` reference in ``node``, left to right."""
    if isinstance(node, Name | Pixels):
        yield node
    elif isinstance(node, Neg):
        yield from names(node.arg)
    elif isinstance(node, Bin):
        yield from names(node.left)
        yield from names(node.right)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from names(arg)


class _Builder:
    """ast -> tree, refusing every node kind that is not on the list."""

    def __init__(self, body: str, shift: int) -> None:
        self.body, self.shift = body, shift

    def col(self, node: ast.AST) -> int:
        # ast columns count UTF-8 bytes; the text is ASCII (checked above), so bytes = characters
        return int(getattr(node, "col_offset", 0)) + 1 + self.shift

    def build(self, node: ast.expr, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ExprError(f"an expression nested at most {MAX_DEPTH} deep", "deeper nesting", self.col(node))
        col = self.col(node)
        if isinstance(node, ast.Constant):
            return self._number(node, col)
        if isinstance(node, ast.Name):
            return self._name(node.id, col)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return Neg(self.build(node.operand, depth + 1), col)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return Bin(_OPS[type(node.op)], self.build(node.left, depth + 1), self.build(node.right, depth + 1), col)
        if isinstance(node, ast.Call):
            return self._call(node, depth, col)
        if isinstance(node, ast.BinOp):  # an operator not on the list: point at the operator itself
            at = int(getattr(node.left, "end_col_offset", 0))
            while at < len(self.body) and self.body[at] in " \t)":
                at += 1
            op = self.body[at:at + 2] if self.body[at:at + 2] in ("**", "//") else self.body[at:at + 1]
            raise ExprError("one of + - * /", repr(op), at + 1 + self.shift)
        raise ExprError("a number, a name, + - * /, unary minus or a call of abs sqrt log exp min max pixels",
                        _describe(node, self.body), col)

    def _number(self, node: ast.Constant, col: int) -> Num:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ExprError("a number or a name", repr(value), col)
        try:
            f = float(value)
        except OverflowError:
            f = float("inf")
        if f != f or f in (float("inf"), float("-inf")):
            raise ExprError("a finite number", ast.get_source_segment(self.body, node) or repr(value), col)
        return Num(f, col)

    def _name(self, name: str, col: int) -> Name:
        if not IDENTIFIER.match(name):
            raise ExprError("a name made of A-Z a-z 0-9 _", repr(name), col)
        if name in FUNCTIONS or name == "pixels":
            raise ExprError(f"{name}(...) called with arguments", f"{name} without them", col)
        return Name(name, col)

    def _call(self, node: ast.Call, depth: int, col: int) -> Node:
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func is None or (func not in FUNCTIONS and func != "pixels"):
            shown = func if func is not None else _describe(node.func, self.body)
            raise ExprError("a call of abs, sqrt, log, exp, min, max or pixels", f"{shown}(...)", col)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExprError(f"{func}() with plain arguments", "a keyword or starred argument", col)
        if func == "pixels":
            arg = node.args[0] if len(node.args) == 1 else None
            if not isinstance(arg, ast.Name):
                raise ExprError("pixels(ROI) with one ROI name", f"pixels() of {len(node.args)} argument(s)"
                                if arg is None else _describe(arg, self.body), col)
            return Pixels(self._name(arg.id, self.col(arg)).name, self.col(arg))
        least = FUNCTIONS[func]
        if len(node.args) < least or (least == 1 and len(node.args) > 1):
            wanted = "one argument" if least == 1 else "two or more arguments"
            raise ExprError(f"{func}() with {wanted}", f"{len(node.args)} argument(s)", col)
        return Call(func, tuple(self.build(a, depth + 1) for a in node.args), col)


def _describe(node: ast.AST, body: str) -> str:
    text = ast.get_source_segment(body, node)
    return repr(text) if text else type(node).__name__
