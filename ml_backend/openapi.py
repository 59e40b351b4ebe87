"""The backend's OpenAPI 3.1 document, served at GET /openapi.json: every route, its body and its answers.

Plain data, Flask-free; tests/test_routes.py checks that it names every route the Blueprint serves.
"""
from __future__ import annotations

import copy

from .ids import NAME_PATTERN

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _answers(ok: dict, *codes: int) -> dict:
    """The 200 answer plus the JSON error answers a route can give."""
    out = {"200": {"description": "OK", **_json(ok)}}
    reasons = {400: "bad input: the message names the field", 401: "basic auth required or wrong",
               413: "body over the size limit", 415: "body not sent as application/json"}
    for code in codes:
        out[str(code)] = {"description": reasons[code], **_json(_ERROR)}
    return out


_DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "goldloop ML backend",
        "version": "1",
        "description": "Label Studio's ML backend protocol over goldloop's models. Every error is a JSON object "
                       "{error, message}; no route answers a traceback. HTTP basic auth guards every route but "
                       "/health when it is configured. A Host header naming no allowed host answers 400 "
                       "DisallowedHost on every route.",
    },
    "components": {
        "schemas": {
            "Error": {"type": "object", "required": ["error", "message"],
                      "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
            "Project": {
                "description": "A Label Studio project id (a positive integer, or the '<id>.<timestamp>' string "
                               f"Label Studio sends) or a name matching {NAME_PATTERN}; absent means 'default'.",
                "oneOf": [{"type": "integer", "minimum": 1},
                          {"type": "string", "pattern": r"^[1-9][0-9]{0,14}(\.[0-9]{1,20})?$"},
                          {"type": "string", "pattern": f"^{NAME_PATTERN}$"}],
            },
            "Task": {"type": "object", "properties": {"id": {}, "data": {"type": "object"}},
                     "description": "A Label Studio task; data holds the text fields the labeling config reads."},
            "Prediction": {"type": "object", "required": ["result", "score", "model_version"],
                           "properties": {"result": {"type": "array", "items": {"type": "object"}},
                                          "score": {"type": "number", "minimum": 0, "maximum": 1},
                                          "model_version": {"type": "string"},
                                          "interactive": {"type": "boolean", "description": "an answer to params.context"},
                                          "model_pending": {"type": "boolean",
                                                            "description": "interactive: the model's spans were not ready in time"}}},
        },
        "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
    },
    "paths": {
        "/": {"get": {"summary": "Same as /health", "responses": _answers({"type": "object"})}},
        "/health": {"get": {"summary": "Liveness; never loads a model. loaded_projects and pid only for callers "
                                       "who may read every route (the right credentials when basic auth is on)",
                            "security": [],
                            "responses": _answers({"type": "object", "properties": {
                                "status": {"const": "UP"}, "model_class": {"type": "string"},
                                "loaded_projects": {"type": "array", "items": {"type": "string"}},
                                "pid": {"type": "integer"}}})}},
        "/setup": {"post": {
            "summary": "Register a project's labeling config; answers the model version at once, loads in the background",
            "requestBody": {"required": True, **_json({"type": "object", "properties": {
                "project": {"$ref": "#/components/schemas/Project"}, "schema": {"type": "string", "description": "labeling config XML"}}})},
            "responses": _answers({"type": "object", "properties": {"model_version": {"type": "string"}}}, 400, 401, 413, 415)}},
        "/predict": {"post": {
            "summary": "One prediction per task, in order; a bad task gets an empty result. With params.context.result "
                       "(Label Studio's Auto-Annotation): one task, answered at once with the annotator's regions, "
                       "the marked strings copied and the model's non-overlapping spans; a context that does not fit "
                       "the config answers 400",
            "requestBody": {"required": True, **_json({"type": "object", "required": ["tasks"], "properties": {
                "project": {"$ref": "#/components/schemas/Project"},
                "label_config": {"type": "string", "description": "labeling config XML; optional after /setup"},
                "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
                "params": {"type": ["object", "null"], "properties": {"context": {
                    "type": ["object", "null"], "description": "the annotator's partial result",
                    "properties": {"result": {"type": "array", "items": {"type": "object"}}}}}}}})},
            "responses": _answers({"type": "object", "properties": {
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                "model_version": {"type": "string"}}}, 400, 401, 413, 415)}},
        "/webhook": {"post": {
            "summary": "A Label Studio webhook event: recorded; annotations teach the cold-start models; START_TRAINING starts a round",
            "requestBody": {"required": True, **_json({"type": "object", "required": ["action"], "properties": {
                "action": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"},
                "project": {"oneOf": [{"$ref": "#/components/schemas/Project"},
                                      {"type": "object", "properties": {"id": {"$ref": "#/components/schemas/Project"}}}]},
                "task": {"$ref": "#/components/schemas/Task"}, "annotation": {"type": "object"}}})},
            "responses": {**_answers({"type": "object", "properties": {"status": {"const": "ok"}, "action": {"type": "string"},
                                                                       "learned": {"type": "boolean"}, "training": {"type": "string"}}},
                                     400, 401, 413, 415),
                          "201": {"description": "START_TRAINING accepted", **_json({"type": "object"})}}}},
        "/versions": {"get": {
            "summary": "Saved model versions, newest first",
            "parameters": [{"name": "project", "in": "query", "required": False, "schema": {"$ref": "#/components/schemas/Project"}}],
            "responses": _answers({"type": "object", "properties": {"versions": {"type": "array", "items": {"type": "string"}},
                                                                    "details": {"type": "array", "items": {"type": "object"}}}}, 400, 401)}},
        "/dashboard": {"get": {
            "summary": "A project's dashboard as HTML (no script): labels, versions and gate decisions, learning curve, annotator "
                       "time against the control group, queue, stopping criterion; without project: the index of projects",
            "parameters": [{"name": "project", "in": "query", "required": False, "schema": {"$ref": "#/components/schemas/Project"}}],
            "responses": {"200": {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}},
                          "400": {"description": "bad project key", **_json(_ERROR)},
                          "401": {"description": "basic auth required or wrong", **_json(_ERROR)},
                          "404": {"description": "no such project on this backend", **_json(_ERROR)}}}},
        "/metrics": {"get": {"summary": "Prometheus text format",
                             "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           "401": {"description": "basic auth required or wrong", **_json(_ERROR)}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": _answers({"type": "object"}, 401)}},
    },
    "security": [{"basic": []}],
}


def openapi_document() -> dict:
    """A fresh copy of the OpenAPI document (callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
