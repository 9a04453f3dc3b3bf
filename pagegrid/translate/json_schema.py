"""A client's JSON Schema as the schema Claude's structured outputs accept (pure).

Anthropic's JSON outputs (``output_config.format``) compile the schema into a grammar and take a
subset of JSON Schema (https://platform.claude.com/docs/en/build-with-claude/structured-outputs,
"JSON Schema limitations"): every object closed with ``additionalProperties: false``; no numeric,
length or array-size constraints beyond ``minItems`` 0 or 1; only some string formats and regular
expression features; no recursive or external ``$ref``; enums and consts of primitives.
``anthropic_output_schema`` makes the changes Anthropic's own SDKs make (``transform_schema`` in
anthropic-sdk-python): a typed object is closed, ``oneOf`` becomes ``anyOf``, a ``$ref`` stands
alone, an enum or const carries no ``type``, and the constraints the grammar cannot enforce (or, like
a pattern, not always) move into the ``description`` so the model still reads them.
What cannot be changed without changing the meaning (an open object, ``patternProperties``, ``not``,
conditionals, recursion, ...) raises ``UnsupportedSchema`` naming the keyword and where it is.
"""

from __future__ import annotations

from pagegrid.json_types import JSON
from pagegrid.translate.fields import is_int

SUPPORTED_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4",
                               "ipv6", "uuid"})
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
# Kept as they are (each checked below where it has limits).
_KEPT = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const",
                   "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "description", "title",
                   "format", "minItems"})
# Constraints and annotations the grammar cannot enforce: moved into the description.
_DESCRIBED = frozenset({"pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                        "multipleOf", "minLength", "maxLength", "maxItems", "uniqueItems", "minProperties",
                        "maxProperties", "default", "examples", "contentEncoding", "contentMediaType"})
# Bookkeeping with no effect on the output.
_DROPPED = frozenset({"$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"})
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf")


class UnsupportedSchema(Exception):
    """A schema keyword Claude's structured outputs cannot take, and where it is."""

    def __init__(self, keyword: str, where: str, why: str) -> None:
        super().__init__(f"'{keyword}' at {where} {why}")
        self.keyword = keyword
        self.where = where


def anthropic_output_schema(schema: dict) -> dict:
    """``schema`` in the form ``output_config.format.schema`` takes; UnsupportedSchema if impossible."""
    definitions: dict[str, object] = {}
    for section in ("$defs", "definitions"):
        found = schema.get(section) if isinstance(schema, dict) else None
        if isinstance(found, dict):
            definitions.update({f"#/{section}/{name}": value for name, value in found.items()})
    _refuse_recursion(schema, definitions)
    try:
        return _schema(schema, "#")
    except RecursionError:
        raise UnsupportedSchema("schema", "#", "is nested too deeply") from None


def _primitive(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _schema(schema: object, where: str) -> dict:
    if not isinstance(schema, dict):
        raise UnsupportedSchema("schema", where, "must be a JSON Schema object")
    out: JSON = {}
    described: JSON = {}
    for key, value in schema.items():
        if key in _DROPPED:
            continue
        if key in _DESCRIBED:
            described[key] = value
        elif key not in _KEPT:
            raise UnsupportedSchema(key, where, "is not supported by Claude's structured outputs")
        else:
            _keyword(out, described, key, value, where)
    if "$ref" in out:  # a reference stands alone (its definitions stay beside it)
        return {key: out[key] for key in ("$ref", "$defs", "definitions") if key in out}
    if "enum" in out or "const" in out:  # the literals say the type, as Anthropic's SDKs send them
        out.pop("type", None)
    elif _is_object(schema):
        _close_object(schema, out, where)
    if not ({"type", "enum", "const", "$ref"} | set(_SUBSCHEMA_LISTS)) & set(out):
        raise UnsupportedSchema("type", where, "is missing: every schema needs a type, enum, const, $ref "
                                               "or anyOf")
    if described:  # written as Anthropic's SDKs write it, format and minItems last
        for key in ("format", "minItems"):
            if key in described:
                described[key] = described.pop(key)
        note = "{" + ", ".join(f"{key}: {value}" for key, value in described.items()) + "}"
        out["description"] = f"{out['description']}\n\n{note}" if out.get("description") else note
    return out


def _keyword(out: JSON, described: JSON, key: str, value: object, where: str) -> None:
    if key == "properties":
        if not isinstance(value, dict):
            raise UnsupportedSchema(key, where, "must be an object of schemas")
        out[key] = {name: _schema(sub, f"{where}/properties/{name}") for name, sub in value.items()}
    elif key in ("$defs", "definitions"):
        if not isinstance(value, dict):
            raise UnsupportedSchema(key, where, "must be an object of schemas")
        out[key] = {name: _schema(sub, f"{where}/{key}/{name}") for name, sub in value.items()}
    elif key in _SUBSCHEMA_LISTS:
        if not isinstance(value, list) or not value:
            raise UnsupportedSchema(key, where, "must be a non-empty array of schemas")
        # Claude takes anyOf, not oneOf (as Anthropic's SDKs rewrite it).
        name = "anyOf" if key == "oneOf" else key
        out[name] = [*out.get(name, []), *(_schema(sub, f"{where}/{key}/{i}") for i, sub in enumerate(value))]
    elif key == "items":
        if not isinstance(value, dict):
            raise UnsupportedSchema(key, where, "must be one schema (tuple items are not supported)")
        out[key] = _schema(value, f"{where}/items")
    elif key in ("enum", "const"):
        values = value if key == "enum" else [value]
        if not isinstance(values, list) or not values or not all(_primitive(v) for v in values):
            raise UnsupportedSchema(key, where, "may only hold strings, numbers, booleans or null")
        out[key] = value
    elif key == "$ref":
        if not isinstance(value, str) or not value.startswith("#/"):
            raise UnsupportedSchema(key, where, "must point into this schema's own $defs (no external "
                                                "references)")
        out[key] = value
    elif key == "format":
        _check(isinstance(value, str), key, where, "must be a string")
        if value in SUPPORTED_FORMATS:
            out[key] = value
        else:
            described[key] = value
    elif key == "minItems":
        _check(is_int(value) and value >= 0, key, where, "must be a non-negative integer")
        if value in (0, 1):
            out[key] = value
        else:
            described[key] = value
    elif key == "type":
        kinds = value if isinstance(value, list) else [value]
        _check(bool(kinds) and all(isinstance(kind, str) and kind in _TYPES for kind in kinds), key, where,
               f"must be one of {', '.join(sorted(_TYPES))} or an array of them")
        out[key] = value
    elif key == "required":
        _check(isinstance(value, list) and all(isinstance(name, str) for name in value), key, where,
               "must be an array of property names")
        out[key] = value
    elif key == "additionalProperties":
        if value is not False:
            raise UnsupportedSchema(key, where, "must be false: Claude's structured outputs take closed "
                                                "objects only (a map of free keys cannot be expressed)")
        out[key] = False
    else:  # description, title
        _check(isinstance(value, str), key, where, "must be a string")
        out[key] = value


def _check(ok: bool, keyword: str, where: str, why: str) -> None:
    if not ok:
        raise UnsupportedSchema(keyword, where, why)


def _is_object(schema: dict) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


def _close_object(schema: dict, out: JSON, where: str) -> None:
    """A typed object is closed (``additionalProperties: false``); a free-form one cannot be."""
    if "additionalProperties" in out:
        out.setdefault("properties", {})
        return
    if not isinstance(schema.get("properties"), dict):
        raise UnsupportedSchema("additionalProperties", where, "must be false, with the object's "
                                "properties listed: a free-form object cannot be expressed")
    out["additionalProperties"] = False


def _refs(value: object) -> set[str]:
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("$ref"), str):
                found.add(item["$ref"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _refuse_recursion(schema: object, definitions: dict[str, object]) -> None:
    """Claude's grammar cannot be recursive: no definition may reach itself, nor anything the root."""
    if not isinstance(schema, dict):
        return
    root_refs = _refs({k: v for k, v in schema.items() if k not in ("$defs", "definitions")})
    if "#" in root_refs or any("#" in _refs(body) for body in definitions.values()):
        raise UnsupportedSchema("$ref", "#", "refers back to the root: recursive schemas are not supported")
    edges = {name: _refs(body) & set(definitions) for name, body in definitions.items()}
    for start in definitions:
        seen: set[str] = set()
        stack = list(edges[start])
        while stack:
            name = stack.pop()
            if name == start:
                raise UnsupportedSchema("$ref", start, "refers back to itself: recursive schemas are not "
                                                       "supported")
            if name not in seen:
                seen.add(name)
                stack.extend(edges[name])
