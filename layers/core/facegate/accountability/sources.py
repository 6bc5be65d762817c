"""Constants and docstrings read from the modules that enforce them, without importing those modules.

The vision modules import OpenCV and onnxruntime, which the zip functions (the API among them) do not
carry, yet the model card states their bars. Each constant is read from the module's source with
``ast``: a literal, or arithmetic on literals and the module's earlier constants (``15 * 1024 * 1024``).
So the card follows the code that runs and no figure is copied by hand; a test checks that what is read
equals what the module holds when imported. A constant that is not such an expression is not read, and
asking for it is an error rather than a guess.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

from facegate.errors import AccountabilityError

_BINARY: Final[Mapping[type[ast.operator], Callable[[Any, Any], Any]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
}
_UNARY: Final[Mapping[type[ast.unaryop], Callable[[Any], Any]]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class _NotConstantError(Exception):
    """The expression is not arithmetic on literals and known constants."""


def _value(node: ast.expr, known: Mapping[str, object]) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_value(e, known) for e in node.elts)
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand, known))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left, known), _value(node.right, known))
    raise _NotConstantError


def _assigned(node: ast.stmt) -> tuple[str, ast.expr] | None:
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    return None


def _read(body: list[ast.stmt], prefix: str, known: dict[str, object], notes: dict[str, str]) -> None:
    """Constants of one body (a module's, or an enum class's as ``Class.NAME``), with the docstring that
    follows an assignment, the way attribute docstrings are written here."""
    local: dict[str, object] = dict(known)
    for i, node in enumerate(body):
        if isinstance(node, ast.ClassDef) and not prefix:
            _read(node.body, f"{node.name}.", known, notes)
            continue
        found = _assigned(node)
        if found is None:
            continue
        name, expr = found
        try:
            value = _value(expr, local)
        except (_NotConstantError, ArithmeticError, TypeError):
            continue
        local[name] = value
        known[prefix + name] = value
        after = body[i + 1] if i + 1 < len(body) else None
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            notes[prefix + name] = " ".join(after.value.value.split())


@dataclass(frozen=True)
class ModuleFacts:
    """What a module's source says: its docstring, its constants and their docstrings."""

    module: str
    docstring: str
    constants: Mapping[str, object]
    notes: Mapping[str, str]

    def get(self, name: str) -> Any:
        if name not in self.constants:
            raise AccountabilityError(
                f"{self.module}.{name} is not a constant that can be read from the source (a literal, or "
                "arithmetic on literals): the model card cannot state it"
            )
        return self.constants[name]

    def members(self, cls: str) -> list[object]:
        """The values of a class's constant members, in source order (an enum's values)."""
        return [v for k, v in self.constants.items() if k.startswith(f"{cls}.")]


@cache
def read_module(module: str) -> ModuleFacts:
    """Read ``facegate.x.y`` from the installed package's ``facegate/x/y.py``; nothing is imported but
    the top-level ``facegate`` package."""
    package, *parts = module.split(".")
    if not parts:
        raise AccountabilityError(f"{module} is a package, not a module of one")
    source = resources.files(package).joinpath(*parts[:-1], f"{parts[-1]}.py")
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as exc:
        raise AccountabilityError(f"cannot read {module}'s source: {exc}") from exc
    constants: dict[str, object] = {}
    notes: dict[str, str] = {}
    _read(tree.body, "", constants, notes)
    return ModuleFacts(module, ast.get_docstring(tree) or "", constants, notes)
