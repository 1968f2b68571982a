"""The OpenAPI document, made from the routes' specs and the wire schemas: they cannot drift."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api import RouteSpec
from service.schemas import ProblemOut

REF = "#/components/schemas/{model}"


def document(app: Flask) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document for every route registered with a `RouteSpec`."""
    routes = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions[rule.endpoint], "api_spec", None)
        if isinstance(spec, RouteSpec):
            routes.append((rule, spec))
    models: set[type[BaseModel]] = {ProblemOut}
    for _, spec in routes:
        if spec.body:
            models.add(spec.body)
        models.update(m for m in spec.responses.values() if m is not None)
    keyed = [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)]
    _, top = models_json_schema(keyed, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for rule, spec in sorted(routes, key=lambda r: r[0].rule):
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule.arguments, spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Contract access service", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(path_args: set[str], spec: RouteSpec) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": spec.summary, "responses": {}}
    params = [
        {
            "name": a,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 128},
        }
        for a in sorted(path_args)
    ]
    if spec.query is not None:
        props = spec.query.model_json_schema()["properties"]
        params += [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in props.items()
        ]
    if params:
        op["parameters"] = params
    if spec.scopes is not None:
        op["security"] = [{"bearer": []}]
        op["x-scopes"] = [s.value for s in spec.scopes] or ["any"]
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=spec.body.__name__)}}
            },
        }
    for status, model in spec.responses.items():
        content = (
            {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}
            if model is not None
            else ({} if status == 204 else _problem())
        )
        op["responses"][str(status)] = {
            "description": str(status),
            **({"content": content} if content else {}),
        }
    takes_input = spec.body is not None or spec.query is not None or bool(path_args)
    errors = {
        400: takes_input,
        401: spec.scopes is not None,
        403: bool(spec.scopes),
        413: spec.body is not None,
        415: spec.body is not None,
        503: spec.scopes is not None,
    }
    for status, applies in errors.items():
        if applies:
            op["responses"].setdefault(
                str(status), {"description": str(status), "content": _problem()}
            )
    return op


def _problem() -> dict[str, Any]:
    return {"application/problem+json": {"schema": {"$ref": REF.format(model="ProblemOut")}}}
