"""GET /openapi.json: the OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache
from importlib import metadata
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from domain.errors import InvalidRequest, LinkExpired, LinkSignatureInvalid
from entrypoints.errors import ErrorOutcome, outcome_for_type
from entrypoints.web.http import json_response
from entrypoints.web.routes import ROUTES, AnswerSpec, Auth, MediaAnswer, Route
from services.answers import ErrorAnswer
from services.validation import MAX_REF_LENGTH

_REF = "#/components/schemas/{model}"
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")

_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.API: [{"apiToken": []}],
    Auth.OPERATOR: [{"operatorToken": []}],
    Auth.API_OR_QR_LINK: [{"apiToken": []}, {"qrLink": []}],
    Auth.IPN: [{"ipnSignature": []}],
}
_SECURITY_SCHEMES = {
    "apiToken": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer $API_TOKEN`"},
    "operatorToken": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer $OPERATOR_TOKEN`"},
    "qrLink": {
        "type": "apiKey",
        "in": "query",
        "name": "signature",
        "description": "the signed link in a payment's `qr_code_url` (with its `expires`): that payment only, "
        "for an hour",
    },
    "ipnSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "x-nowpayments-sig",
        "description": "HMAC-SHA512 of the body with the IPN secret, as NOWPayments signs it",
    },
}
# Refusals that come from the framework and the middlewares rather than from a handler's own errors.
_UNAUTHORIZED = (401, "unauthorized")
_BODY_REFUSALS = ((400, "invalid_request"), (408, "request_timeout"), (413, "too_large"))
_NO_SUCH_ROUTE = (404, "not_found")  # a path parameter holding "/" matches no route


def _models(routes: tuple[Route, ...]) -> list[tuple[type[BaseModel], Any]]:
    wanted: dict[tuple[type[BaseModel], str], None] = {(ErrorAnswer, "serialization"): None}
    for route in routes:
        for model, mode in ((route.query, "validation"), (route.body, "validation")):
            if model is not None:
                wanted[(model, mode)] = None
        for answer in (route.answer, *route.other_answers.values()):
            for model in _answer_models(answer):
                wanted[(model, "serialization")] = None
    return list(wanted)


def _answer_models(answer: AnswerSpec) -> tuple[type[BaseModel], ...]:
    if isinstance(answer, MediaAnswer):
        return ()
    return answer if isinstance(answer, tuple) else (answer,)


def _error_codes(route: Route) -> dict[int, set[str]]:
    codes: dict[int, set[str]] = defaultdict(set)
    for status, code in _implicit_refusals(route):
        codes[status].add(code)
    for cls in route.errors:
        outcome = _outcome(cls)
        codes[outcome.http_status].add(outcome.code)
    return codes


def _outcome(cls: type[BaseException]) -> ErrorOutcome:
    outcome = outcome_for_type(cls)
    if outcome is None:
        raise LookupError(f"{cls.__name__} has no row in entrypoints/errors.py")
    return outcome


def _implicit_refusals(route: Route) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    if route.auth in (Auth.API, Auth.OPERATOR, Auth.API_OR_QR_LINK):
        found.append(_UNAUTHORIZED)
    if route.auth is Auth.API_OR_QR_LINK:
        found.extend((_outcome(cls).http_status, _outcome(cls).code) for cls in (LinkSignatureInvalid, LinkExpired))
    if route.body is not None or route.auth is Auth.IPN:
        found.extend(_BODY_REFUSALS)
    if route.query is not None or _PATH_PARAMETER.search(route.path):
        found.append((400, _outcome(InvalidRequest).code))
    if _PATH_PARAMETER.search(route.path):
        found.append(_NO_SUCH_ROUTE)
    if route.uses_database:
        outcome = _outcome(asyncpg.PostgresConnectionError)
        found.append((outcome.http_status, outcome.code))
    return found


def _parameters(route: Route, schemas: dict[str, Any], refs: dict[Any, str]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_REF_LENGTH},
        }
        for name in _PATH_PARAMETER.findall(route.path)
    ]
    if route.query is not None:
        query_schema = schemas[refs[(route.query, "validation")]]
        required = set(query_schema.get("required", ()))
        for name, declared in query_schema["properties"].items():
            schema = _absent_not_null(declared)
            parameter = {"name": name, "in": "query", "required": name in required, "schema": schema}
            if "description" in schema:
                parameter["description"] = schema["description"]
            parameters.append(parameter)
    return parameters


def _absent_not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: keep the non-null branch of an optional one."""
    branches = [branch for branch in schema.get("anyOf", ()) if branch != {"type": "null"}]
    if "anyOf" not in schema or len(branches) != 1:
        return schema
    outer = {key: value for key, value in schema.items() if key not in ("anyOf", "default", "title")}
    return {**branches[0], **outer}


def _content(answer: AnswerSpec, refs: dict[Any, str]) -> dict[str, Any]:
    if isinstance(answer, MediaAnswer):
        return {answer.media_type: {"schema": dict(answer.schema)}}
    schemas = [{"$ref": _REF.format(model=refs[(model, "serialization")])} for model in _answer_models(answer)]
    return {"application/json": {"schema": schemas[0] if len(schemas) == 1 else {"oneOf": schemas}}}


def _responses(route: Route, refs: dict[Any, str]) -> dict[str, Any]:
    responses: dict[str, Any] = {str(route.status): {"description": route.summary, **_answer(route.answer, refs)}}
    for status, answer in route.other_answers.items():
        responses[str(status)] = {"description": _described(answer), **_answer(answer, refs)}
    error_ref = {"$ref": _REF.format(model=refs[(ErrorAnswer, "serialization")])}
    for status, codes in sorted(_error_codes(route).items()):
        listed = sorted(codes)
        schema = {"allOf": [error_ref], "properties": {"error": {"enum": listed}}}
        description = "refused: " + ", ".join(f"`{code}`" for code in listed)
        responses[str(status)] = {"description": description, "content": {"application/json": {"schema": schema}}}
    return responses


def _described(answer: AnswerSpec) -> str:
    models = _answer_models(answer)
    return " Or: ".join((model.__doc__ or model.__name__).strip() for model in models) or "the answer"


def _answer(answer: AnswerSpec, refs: dict[Any, str]) -> dict[str, Any]:
    return {"content": _content(answer, refs)}


def _operation(route: Route, schemas: dict[str, Any], refs: dict[Any, str]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__ if route.handler.__name__ != "_openapi" else "openapi",
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": _parameters(route, schemas, refs),
        "responses": _responses(route, refs),
        "security": _SECURITY.get(route.auth, []),
    }
    if route.handler.__doc__:
        operation["description"] = " ".join(route.handler.__doc__.split())
    if route.body is not None:
        body_ref = {"$ref": _REF.format(model=refs[(route.body, "validation")])}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_ref}}}
    return operation


def openapi_document(routes: tuple[Route, ...] = ROUTES) -> dict[str, Any]:
    """The whole document for ``routes``; every schema comes from the routes' pydantic models."""
    keys, top = models_json_schema(_models(routes), ref_template=_REF)
    refs = {key: ref["$ref"].rsplit("/", 1)[-1] for key, ref in keys.items()}
    schemas: dict[str, Any] = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for route in routes:
        paths[route.path][route.method.lower()] = _operation(route, schemas, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "payments-pipeline",
            "version": metadata.version("payments-pipeline"),
            "description": "Crypto deposits, balances and withdrawals over NOWPayments. Amounts are decimal "
            'strings; every refusal is `{"error": code, "message": text}` with the codes listed per answer.',
        },
        "paths": dict(paths),
        "components": {"schemas": schemas, "securitySchemes": _SECURITY_SCHEMES},
    }


@cache
def _served_document() -> dict[str, Any]:
    return openapi_document()


def openapi_response(_: web.Request) -> web.Response:
    """The document, built once per process."""
    return json_response(_served_document())
