"""A small partial evaluator for the Bicep trees pycep produces, enough to answer one question:
which site properties and app settings reach a `Microsoft.Web/sites` resource for a given set
of parameter values.

pycep (the parser checkov uses) gives a JSON-like tree in which identifiers and string literals
are both plain Python strings. A string is treated as a reference when it names a parameter or
variable of the file, or a loop variable; anything else is a literal.

Every value evaluates to a list of *alternatives* (possible values). An object is one alternative
mapping each key to the alternatives of its value; a list is one alternative holding the
alternatives of all its elements. No cartesian products are formed, so the result is a "may"
over-approximation: a condition that cannot be decided from the given parameters (for example
`graphCredentialKind == 'client-secret'` with no value given) contributes both branches, and
`union()` of alternatives merges all their keys. Every key that some deployment could send is seen;
conditions that are decided (the hosting plan, when it is given) prune exactly.

With `use_defaults=True` a parameter that is not given takes its declared default (itself an
expression, possibly of other parameters), so a whole deployment can be evaluated exactly as ARM
would for the given parameter values; a few string/array functions (`replace`, `split`,
`intersection`, `join`) are evaluated for that.
"""

from __future__ import annotations

import itertools
import pathlib
import re
from typing import Any

from pycep import BicepParser

UNKNOWN = object()  # a value we cannot compute (resource outputs, most functions)


class Scope:
    def __init__(
        self,
        tree: dict,
        params: dict[str, list[Any]],
        locals_: dict | None = None,
        use_defaults: bool = False,
    ):
        self.tree = tree
        self.params = params  # name -> alternatives
        self.locals = locals_ or {}  # loop variables -> alternatives
        self.use_defaults = use_defaults  # parameters not given take their declared default
        self._vars: dict[str, list[Any]] = {}
        self._defaults: dict[str, list[Any]] = {}

    def child(self, **locals_: list[Any]) -> "Scope":
        scope = Scope(self.tree, self.params, {**self.locals, **locals_}, self.use_defaults)
        scope._vars = self._vars
        scope._defaults = self._defaults
        return scope

    def lookup(self, name: str) -> list[Any] | None:
        if name in self.locals:
            return self.locals[name]
        if name in self.params:
            return self.params[name]
        variables = self.tree.get("variables", {})
        if name in variables:
            if name not in self._vars:
                self._vars[name] = [UNKNOWN]  # guards against cycles
                self._vars[name] = evaluate(variables[name]["value"], self)
            return self._vars[name]
        declared = self.tree.get("parameters", {})
        if name in declared:
            if self.use_defaults and "default" in declared[name]:
                if name not in self._defaults:
                    self._defaults[name] = [UNKNOWN]  # guards against cycles
                    self._defaults[name] = evaluate(declared[name]["default"], self)
                return self._defaults[name]
            return [UNKNOWN]
        return None


def _dedup(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(v is o or (type(v) is type(o) and v == o) for o in out):
            out.append(v)
    return out


def _truth(value: Any) -> bool | None:
    if value is UNKNOWN or isinstance(value, (dict, list)):
        return None
    return bool(value)


def _reassociate(node: dict) -> dict:
    """pycep 0.5.1 parses `a == 'x' ? b : c` as `a == ('x' ? b : c)`; undo that."""
    op = node.get("operator")
    if not isinstance(op, dict) or op.get("type") not in ("equals", "not_equals"):
        return node
    right = op["operands"].get("operand_2")
    if isinstance(right, dict) and isinstance(right.get("operator"), dict) and right["operator"].get("type") == "conditional":
        inner = right["operator"]["operands"]
        return {
            "operator": {
                "type": "conditional",
                "operands": {
                    "condition": {"operator": {"type": op["type"], "operands": {"operand_1": op["operands"]["operand_1"], "operand_2": inner["condition"]}}},
                    "true_value": inner["true_value"],
                    "false_value": inner["false_value"],
                },
            }
        }
    return node


def _conditional(operands: dict, scope: Scope) -> list[Any]:
    out: list[Any] = []
    conditions = evaluate(operands["condition"], scope)
    truths = {_truth(c) for c in conditions}
    if None in truths or True in truths:
        out += evaluate(operands["true_value"], scope)
    if None in truths or False in truths:
        out += evaluate(operands["false_value"], scope)
    return _dedup(out)


def _binary(kind: str, operands: dict, scope: Scope) -> list[Any]:
    out = []
    for a, b in itertools.product(evaluate(operands["operand_1"], scope), evaluate(operands["operand_2"], scope)):
        if a is UNKNOWN or b is UNKNOWN or isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
            out.append(UNKNOWN)
        elif kind == "equals":
            out.append(a == b)
        elif kind == "not_equals":
            out.append(a != b)
        elif kind == "and":
            out.append(bool(a) and bool(b))
        elif kind == "or":
            out.append(bool(a) or bool(b))
        else:
            out.append(UNKNOWN)
    return _dedup(out)


def _merge(objects: list[dict]) -> dict:
    merged: dict[str, list[Any]] = {}
    for obj in objects:
        for key, alts in obj.items():
            merged[key] = _dedup(merged.get(key, []) + alts)
    return merged


def _items(value: Any) -> Any:
    """items(obj): one list alternative of {key, value} entries."""
    if not isinstance(value, dict):
        return UNKNOWN
    return [{"key": [k], "value": v} for k, v in value.items()]


def _strings(fn, *alternatives: list[Any]) -> list[Any]:
    """fn applied to every combination of alternatives; UNKNOWN where an argument has no value
    of the expected shape (fn raises TypeError)."""
    out = []
    for combination in itertools.product(*alternatives):
        if any(v is UNKNOWN for v in combination):
            out.append(UNKNOWN)
            continue
        try:
            out.append(fn(*combination))
        except TypeError:
            out.append(UNKNOWN)
    return _dedup(out)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(value)
    return value


def _function(fn: dict, scope: Scope) -> list[Any]:
    kind = fn.get("type")
    params = fn.get("parameters") or {}
    args = [params[k] for k in sorted(params)] if isinstance(params, dict) else []
    named = params if isinstance(params, dict) else {}
    if kind == "replace" and {"original_string", "old_string", "new_string"} <= set(named):
        return _strings(
            lambda s, old, new: _str(s).replace(_str(old), _str(new)),
            *(evaluate(named[k], scope) for k in ("original_string", "old_string", "new_string")),
        )
    if kind == "split" and {"input_string", "delimiter"} <= set(named):
        return _strings(
            lambda s, d: _str(s).split(_str(d)),
            evaluate(named["input_string"], scope),
            evaluate(named["delimiter"], scope),
        )
    if kind == "join" and {"input_array", "delimiter"} <= set(named):
        return _strings(
            lambda a, d: _str(d).join(_str_list(a)),
            evaluate(named["input_array"], scope),
            evaluate(named["delimiter"], scope),
        )
    if kind == "intersection" and len(args) == 2:
        # ARM keeps the first array's order.
        return _strings(
            lambda a, b: [x for x in _str_list(a) if x in _str_list(b)],
            *(evaluate(a, scope) for a in args),
        )
    if kind == "union":
        alternatives = [v for arg in args for v in evaluate(arg, scope)]
        objects = [v for v in alternatives if isinstance(v, dict)]
        out: list[Any] = [_merge(objects)] if objects else []
        if any(not isinstance(v, dict) for v in alternatives):
            out.append(UNKNOWN)
        return out
    if kind == "empty" and args:
        return _dedup([UNKNOWN if (v is UNKNOWN or isinstance(v, (dict, list))) else (v in ("", None)) for v in evaluate(args[0], scope)])
    if kind == "items" and args:
        return [_items(v) for v in evaluate(args[0], scope)]
    return [UNKNOWN]


def _loop(node: dict, scope: Scope) -> list[Any]:
    loop_type = node["loop_type"]
    detail = loop_type.get("detail", {})
    item = detail.get("item_name")
    if loop_type.get("type") == "object":
        # `for x in items(obj)`: pycep names the object directly.
        sources = [_items(v) for v in evaluate(detail.get("object_name"), scope)]
    else:
        name = detail.get("array_name") or detail.get("object_name")
        sources = evaluate(name, scope) if name is not None else [UNKNOWN]
    elements: list[Any] = []
    for source in sources:
        if not isinstance(source, list):
            elements.append(UNKNOWN)
            continue
        for element in source:
            elements += evaluate(node["config"], scope.child(**{item: [element]}))
    return [_dedup(elements)]


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _interpolate(text: str, scope: Scope) -> str:
    """`${name}` replaced where `name` has exactly one string value; anything else stays as written."""

    def substitute(match: re.Match) -> str:
        found = scope.lookup(match.group(1))
        if found is not None and len(found) == 1 and isinstance(found[0], str):
            return found[0]
        return match.group(0)

    return _INTERPOLATION.sub(substitute, text)


def evaluate(node: Any, scope: Scope) -> list[Any]:
    if isinstance(node, str):
        found = scope.lookup(node)
        if found is not None:
            return found
        return [_interpolate(node, scope) if "${" in node else node]
    if isinstance(node, (int, float, bool)) or node is None:
        return [node]
    if isinstance(node, list):
        return [_dedup([v for x in node for v in evaluate(x, scope)])]
    if not isinstance(node, dict):
        return [UNKNOWN]
    if "loop_type" in node:
        return _loop(node, scope)
    node = _reassociate(node)
    if "operator" in node and isinstance(node["operator"], dict) and len(node) == 1:
        op = node["operator"]
        kind, operands = op.get("type"), op.get("operands", {})
        if kind == "conditional":
            return _conditional(operands, scope)
        if kind in ("equals", "not_equals", "and", "or"):
            return _binary(kind, operands, scope)
        if kind in ("logical_not", "not"):
            # pycep names the operand `bool_value`.
            inner = operands
            if isinstance(operands, dict):
                inner = next((operands[k] for k in ("operand", "bool_value") if k in operands), None)
            return _dedup([UNKNOWN if _truth(v) is None else not v for v in evaluate(inner, scope)])
        if kind == "property_accessor":
            key = operands["operand_2"]
            out: list[Any] = []
            for base in evaluate(operands["operand_1"], scope):
                if isinstance(base, dict) and isinstance(key, str) and key in base:
                    out += base[key]
                else:
                    out.append(UNKNOWN)
            return _dedup(out)
        return [UNKNOWN]
    if "function" in node and isinstance(node["function"], dict) and len(node) == 1:
        return _function(node["function"], scope)
    # An object literal.
    return [{key: evaluate(value, scope) for key, value in node.items()}]


def parse(path: pathlib.Path) -> dict:
    return BicepParser().parse(file_path=pathlib.Path(path))


def module_params(
    caller: dict,
    module_path: str,
    caller_params: dict[str, list[Any]],
    use_defaults: bool = False,
) -> dict[str, list[Any]]:
    """Parameter name -> alternatives that `caller` passes to the module at `module_path`."""
    scope = Scope(caller, caller_params, use_defaults=use_defaults)
    for module in caller.get("modules", {}).values():
        if module.get("detail", {}).get("path") == module_path:
            return {name: evaluate(value, scope) for name, value in module["config"].get("params", {}).items()}
    raise LookupError(f"no module {module_path}")


def sites(tree: dict, params: dict[str, list[Any]]) -> list[tuple[str, dict]]:
    """(resource name, evaluated body) for every alternative of every Microsoft.Web/sites resource."""
    scope = Scope(tree, params)
    out = []
    for name, resource in tree.get("resources", {}).items():
        if resource.get("type") != "Microsoft.Web/sites" or resource.get("existing"):
            continue
        for body in evaluate(resource["config"], scope):
            if isinstance(body, dict):
                out.append((name, body))
    return out
