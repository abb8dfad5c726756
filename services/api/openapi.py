"""The OpenAPI document, made to tell the truth about what the API answers.

FastAPI documents a 422 `HTTPValidationError` on every route with parameters, but `errors.py` answers bad
input with a 400 and the contract's error body. And a body schema given through `openapi_extra` (the order
route reads its JSON itself, to keep decimals exact) carries pydantic's `$defs`, whose `#/$defs/...`
references mean nothing at the root of an OpenAPI document: clients and fuzzers cannot resolve them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA_NAME = "ErrorBody"
ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR_SCHEMA_NAME,
    "type": "object",
    "required": ["success", "error", "message", "details"],
    "properties": {
        "success": {"type": "boolean", "const": False},
        "error": {"type": "string", "description": "stable machine-readable code"},
        "message": {"type": "string", "description": "human-readable explanation"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}}}
_LOCAL_DEFS = "#/$defs/"
_COMPONENTS = "#/components/schemas/"


def install(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's own: builds the document once and caches it in app.openapi_schema

    def openapi() -> dict[str, Any]:
        first_time = app.openapi_schema is None
        schema = generate()
        return truthful(schema) if first_time else schema  # corrected in place, so the cache holds the truth

    # FastAPI documents replacing `app.openapi` as the way to amend the document; its types declare a method.
    app.openapi = openapi  # type: ignore[method-assign]


def truthful(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    hoisted: dict[str, Any] = {}
    _pop_local_defs(schema.get("paths", {}), hoisted)
    for name, definition in hoisted.items():
        components.setdefault(name, definition)
    _point_refs_at_components(schema)
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            _document_errors(operation.get("responses", {}))
    return schema


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    return list(node) if isinstance(node, list) else []


def _pop_local_defs(node: Any, into: dict[str, Any]) -> None:
    if isinstance(node, dict):
        into.update(node.pop("$defs", {}))
    for child in _children(node):
        _pop_local_defs(child, into)


def _point_refs_at_components(node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_LOCAL_DEFS):
            node["$ref"] = _COMPONENTS + ref[len(_LOCAL_DEFS) :]
    for child in _children(node):
        _point_refs_at_components(child)


def _document_errors(responses: dict[str, Any]) -> None:
    if responses.pop("422", None) is not None:
        responses.setdefault("400", {"description": "invalid request"})
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            response["content"] = _ERROR_CONTENT
