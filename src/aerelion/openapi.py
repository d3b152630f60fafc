"""An OpenAPI 3.1 description of every function, built from the models they declare."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from aerelion import __version__
from aerelion.auth import secret_policies, security_scheme_name
from aerelion.functions import Function

REF = "#/components/schemas/{model}"
ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "details", "hint"],
    "properties": {
        "code": {"type": "string", "description": "SQLSTATE or a short error code"},
        "message": {"type": "string"},
        "details": {"description": "What was wrong (e.g. the fields at fault), or null"},
        "hint": {"type": ["string", "null"]},
    },
}
ERRORS = {
    "400": "Invalid input",
    "401": "Missing or invalid credentials",
    "403": "Not allowed",
    "405": "Method not allowed",
    "413": "Body too large",
    "415": "Body is not JSON",
    "500": "Server error",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }


def build(functions: list[Function]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = []
    for function in functions:
        if function.body is not None:
            models.append((function.body, "validation"))
        if function.query is not None:
            models.append((function.query, "validation"))
        if function.response is not None:
            models.append((function.response, "serialization"))
    refs, schema_defs = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = dict(schema_defs.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA

    security_schemes: dict[str, Any] = {
        "userJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "serviceRoleJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "serviceRoleKey": {"type": "apiKey", "in": "header", "name": "apikey"},
        "humanSignature": {"type": "apiKey", "in": "header", "name": "X-THS-Token"},
    }
    paths: dict[str, Any] = {}
    for function in functions:
        for secret in secret_policies(function.policy):
            security_schemes[security_scheme_name(secret)] = (
                {"type": "apiKey", "in": "header", "name": secret.header}
                if secret.header
                else {"type": "http", "scheme": "bearer"}
            )
        operations: dict[str, Any] = {}
        for method in function.methods:
            operation: dict[str, Any] = {
                "operationId": f"{function.name}.{method.lower()}",
                "summary": function.summary or function.name,
                "description": f"Auth policy: `{function.policy}`.",
                "security": function.policy.security(),
                "responses": {
                    "200": {
                        "description": "Success",
                        "content": {
                            "application/json": {
                                "schema": refs[(function.response, "serialization")]
                                if function.response
                                else {}
                            }
                        },
                    },
                    **{status: _error(text) for status, text in ERRORS.items()},
                },
            }
            if function.body is not None and method != "GET":
                operation["requestBody"] = {
                    "required": False,
                    "content": {
                        "application/json": {"schema": refs[(function.body, "validation")]}
                    },
                }
            if function.query is not None:
                operation["parameters"] = [
                    {
                        "name": name,
                        "in": "query",
                        "required": field.is_required(),
                        "schema": {"type": "string"},
                        "description": field.description or "",
                    }
                    for name, field in function.query.model_fields.items()
                ]
            operations[method.lower()] = operation
        paths[f"/functions/v1/{function.name}"] = operations
    return {
        "openapi": "3.1.0",
        "info": {"title": "AERELION edge functions", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": security_schemes},
    }
