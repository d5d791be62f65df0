"""The admin API for virtual servers as an OpenAPI 3.1 document, served at /api/v1/openapi.json.

The server document's schema is the config's own (`VirtualServerConfig`), so the API and the loader
cannot disagree on what a virtual server is. tests/proxy/test_openapi.py runs schemathesis against a
live gateway with this document.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ._config import VirtualServerConfig

__all__ = ["openapi"]

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": "The body is not JSON, or the path has an encoded '/'",
    "401": "No gateway token, or not a valid one",
    "403": "The caller's role does not allow it",
    "404": "No such server that the caller may use",
    "409": "The path is taken, the server is defined in the config file, or there is no virtual_servers_dir",
    "412": "If-Match does not match the server's ETag any more",
    "422": "The document is not a valid virtual server (each problem: field path, expected, found)",
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(_ref("Error"), _ERRORS[str(code)]) for code in codes}


_VS = {"name": "vs", "in": "path", "required": True, "description": "The server's path without its leading '/'",
       "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$"}}  # fmt: skip
_IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "The ETag read with the server: refused (412) if it changed since"}  # fmt: skip
_ALLOW_MISSING = {"name": "allow_missing", "in": "query", "required": False, "schema": {"type": "boolean"},
                  "description": "Accept tools the live catalog does not have (yet)"}  # fmt: skip


@cache
def openapi() -> dict[str, Any]:
    schema = VirtualServerConfig.model_json_schema(ref_template=_REF)
    components = schema.pop("$defs", {})
    components["VirtualServer"] = schema
    components["Error"] = {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "string"}}}}  # fmt: skip
    meta = {
        "created_at": {"type": ["string", "null"]}, "updated_at": {"type": ["string", "null"]},
        "created_by": {"type": ["string", "null"]}, "num_stars": {"type": "number"},
        "rating_count": {"type": "integer"}, "tool_count": {"type": "integer"},
        "managed": {"type": "boolean", "description": "false: defined in the config file (read-only here)"},
    }  # fmt: skip
    components["VirtualServerDetail"] = {
        "type": "object", "required": ["path", "server_name", *meta],
        "properties": {"path": {"type": "string"}, "server_name": {"type": "string"}, **meta},
        "additionalProperties": True,
        "description": "The server's document as stored, with its metadata",
    }  # fmt: skip
    components["VirtualServerSummary"] = {
        "type": "object",
        "required": ["path", "server_name", "is_enabled", "tool_count", "num_stars", "rating_count", "managed"],
        "properties": {
            "path": {"type": "string"}, "server_name": {"type": "string"},
            "description": {"type": ["string", "null"]}, "is_enabled": {"type": "boolean"},
            "tool_count": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
            "num_stars": {"type": "number"}, "rating_count": {"type": "integer"}, "managed": {"type": "boolean"},
        },
    }  # fmt: skip
    components["Rating"] = {
        "type": "object", "required": ["path", "num_stars", "rating_count"],
        "properties": {"path": {"type": "string"}, "num_stars": {"type": "number"},
                       "rating_count": {"type": "integer"},
                       "rating_details": {"type": "array", "items": {"type": "object", "required": ["user", "rating"],
                                          "properties": {"user": {"type": "string"},
                                                         "rating": {"type": "integer"}}}}},
    }  # fmt: skip
    message = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}
    detail = _json(_ref("VirtualServerDetail"), "The server, with its ETag in the ETag header")
    body = {"required": True, "content": {"application/json": {"schema": _ref("VirtualServer")}}}
    paths = {
        "/api/v1/virtual-servers": {
            "get": {
                "summary": "The servers the caller may use or manage", "operationId": "listVirtualServers",
                "parameters": [
                    {"name": "enabled_only", "in": "query", "required": False, "schema": {"type": "boolean"}},
                    {"name": "tag", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {"200": _json({"type": "object", "required": ["virtual_servers", "total_count"],
                                            "properties": {"virtual_servers": {"type": "array",
                                                                               "items": _ref("VirtualServerSummary")},
                                                           "total_count": {"type": "integer"}}}, "The servers"),
                              **_errors(401)},
            },
            "post": {
                "summary": "Create a server (admins)", "operationId": "createVirtualServer",
                "parameters": [_ALLOW_MISSING], "requestBody": body,
                "responses": {"201": _json({"type": "object", "required": ["message", "virtual_server"],
                                            "properties": {"message": {"type": "string"},
                                                           "virtual_server": {"type": "object"}}}, "Created"),
                              **_errors(400, 401, 403, 409, 422)},
            },
        },
        "/api/v1/virtual-servers/{vs}": {
            "parameters": [_VS],
            "get": {"summary": "One server", "operationId": "getVirtualServer",
                    "responses": {"200": detail, **_errors(400, 401, 404)}},
            "put": {"summary": "Replace a server (admins, its managers)", "operationId": "updateVirtualServer",
                    "parameters": [_IF_MATCH, _ALLOW_MISSING], "requestBody": body,
                    "responses": {"200": detail, **_errors(400, 401, 403, 404, 409, 412, 422)}},
            "delete": {"summary": "Delete a server (admins)", "operationId": "deleteVirtualServer",
                       "parameters": [_IF_MATCH],
                       "responses": {"200": _json(message, "Deleted"), **_errors(400, 401, 403, 404, 409, 412, 422)}},
        },
        "/api/v1/virtual-servers/{vs}/toggle": {
            "parameters": [_VS],
            "post": {"summary": "Enable or disable a server (admins, its managers)",
                     "operationId": "toggleVirtualServer",
                     "parameters": [_IF_MATCH],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}}}}}},
                     "responses": {"200": detail, **_errors(400, 401, 403, 404, 409, 412, 422)}},
        },
        "/api/v1/virtual-servers/{vs}/rate": {
            "parameters": [_VS],
            "post": {"summary": "Rate a server you may use (1-5; again: replaces yours)",
                     "operationId": "rateVirtualServer",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["rating"],
                         "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 5}}}}}},
                     "responses": {"200": _json({"type": "object", "required": ["message", "num_stars", "rating_count"],
                                                 "properties": {"message": {"type": "string"},
                                                                "num_stars": {"type": "number"},
                                                                "rating_count": {"type": "integer"}}}, "Rated"),
                                   **_errors(400, 401, 404, 422)}},
        },
        "/api/v1/virtual-servers/{vs}/rating": {
            "parameters": [_VS],
            "get": {"summary": "A server's rating (who rated it: its managers)",
                    "operationId": "getVirtualServerRating",
                    "responses": {"200": _json(_ref("Rating"), "The rating"), **_errors(400, 401, 404)}},
        },
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "Slicewire admin API: virtual servers", "version": "1",
                 "description": "mcp-gateway-registry's virtual server operations; docs/virtual-servers.md"},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"gateway_token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"gateway_token": []}],
    }  # fmt: skip
