"""The one path every v1 route takes: authenticate, read a size-limited body, validate, answer."""

from __future__ import annotations

import functools
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

import orjson
from flask import Response, current_app, g, request
from pydantic import BaseModel, TypeAdapter, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from authz.enums import Scope
from authz.errors import AuthzError, FieldError, InvalidInput
from authz.keys import Caller
from authz.runtime import Runtime
from authz.text import ID_RULE
from service import schemas as s
from service.errors import invalid, problem

SMALL_BODY = 64 * 1024
JSON = "application/json"
PATH_ID: TypeAdapter[str] = TypeAdapter(s.Id)


@dataclass(frozen=True)
class RouteSpec:
    """What the OpenAPI document says about one route."""

    summary: str
    scopes: tuple[Scope, ...] | None  # None: no key needed; (): any scope
    body: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    max_bytes: int = SMALL_BODY
    query: type[BaseModel] | None = None
    # Decides: the store's version read is sent once the caller is known, so that its round
    # trip overlaps reading and validating the body (PostgreSQL; the app drops an answer
    # that no decision took when the request ends).
    decides: bool = False


class Unauthorized(AuthzError):
    status = 401
    code = "UNAUTHORIZED"
    title = "Unauthorized"


class Forbidden(AuthzError):
    status = 403
    code = "FORBIDDEN"
    title = "Forbidden"


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["authz"]
    return rt


def caller() -> Caller:
    found: Caller = g.caller
    return found


def route(spec: RouteSpec) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a view: check the key's scope, then hand it the validated body (if any)."""

    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def run(**path: str) -> Any:
            if spec.scopes is not None:
                g.caller = _authenticate(spec.scopes)
            if spec.decides:
                runtime().decider.send_version_read()
            _check_path_ids(path)
            if spec.body is not None:
                path["body"] = read_body(spec.body, spec.max_bytes)
            if spec.query is not None:
                path["query"] = read_query(spec.query)
            return view(**path)

        run.api_spec = spec  # type: ignore[attr-defined]
        return run

    return wrap


def read_body(model: type[BaseModel], max_bytes: int) -> Any:
    """Validate the raw JSON body against `model`.

    :raises UnsupportedMediaType: (415) unless the body is sent as application/json.
    :raises RequestEntityTooLarge: (413) past `max_bytes`, before the body is read.
    :raises InvalidInput: naming each bad field, or a key that appears twice in one object.
    """
    if request.mimetype != JSON:
        sent = request.mimetype or "no Content-Type"
        raise UnsupportedMediaType(f"send the body as '{JSON}', not '{sent}'")
    raw = _read_raw(max_bytes)
    try:
        body = model.model_validate_json(raw or b"")
    except ValidationError as exc:
        raise invalid(exc) from None
    # Each field given came from a key, and each key has its ':' outside any string: a body
    # with no more ':' than fields given holds no key twice (checks and batches, unless a
    # value holds a ':'). The others are read again to find out.
    given = _fields_given(body)
    if given is None or raw.count(b":") != given:
        _reject_duplicate_keys(raw)
    return body


def _fields_given(body: BaseModel) -> int | None:
    """The fields given in the body, its own and those of the models in its lists; None for
    a body of another shape (a model in a model, a list in a list)."""
    lists = _lists_of_flat_models(type(body))
    if lists is None:
        return None
    n = len(body.model_fields_set)
    for name in lists:
        n += sum(len(item.model_fields_set) for item in getattr(body, name))
    return n


@functools.cache
def _lists_of_flat_models(cls: type[BaseModel]) -> tuple[str, ...] | None:
    """The fields of `cls` that hold lists of models of scalars, when all its other fields
    hold scalars; None otherwise."""
    lists = []
    for name, f in cls.model_fields.items():
        if _scalar(f.annotation):
            continue
        args = typing.get_args(f.annotation)
        if typing.get_origin(f.annotation) is not list or not _model_of_scalars(args[0]):
            return None
        lists.append(name)
    return tuple(lists)


def _model_of_scalars(cls: Any) -> bool:
    return (
        isinstance(cls, type)
        and issubclass(cls, BaseModel)
        and all(_scalar(f.annotation) for f in cls.model_fields.values())
    )


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _scalar(annotation: Any) -> bool:
    if annotation in _SCALARS:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return True
    if origin is Annotated:
        return _scalar(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return all(_scalar(a) for a in typing.get_args(annotation))
    return False


def _read_raw(max_bytes: int) -> bytes:
    """The body, refused past `max_bytes`.

    Under gunicorn, which ends the request's stream itself (`wsgi.input_terminated`), the
    body is read from that stream in one call: werkzeug's limiting wrapper around it cost a
    check more than the read, took a body cut short of its Content-Length for the whole
    body, and cut a chunked body at the limit (a 400 for its broken JSON, not a 413).

    :raises RequestEntityTooLarge: (413) past `max_bytes`; before the body is read when
        its Content-Length says so.
    :raises InvalidInput: (400) when the body ends before its Content-Length.
    """
    req = request._get_current_object()  # type: ignore[attr-defined]
    length = req.content_length
    if length is not None and length > max_bytes:
        raise _too_large(max_bytes)
    environ = req.environ
    if not environ.get("wsgi.input_terminated"):  # werkzeug stops at the Content-Length
        req.max_content_length = max_bytes
        try:
            return req.get_data(cache=False)  # type: ignore[no-any-return]
        except RequestEntityTooLarge:
            raise _too_large(max_bytes) from None
    stream = environ["wsgi.input"]
    if length is None:  # chunked: a byte past the limit tells a body that is too large
        raw: bytes = stream.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise _too_large(max_bytes)
        return raw
    raw = stream.read(length)
    if len(raw) != length:
        message = f"the body ended after {len(raw)} of the {length} bytes its Content-Length gives"
        raise InvalidInput(f"the request is invalid: {message}", [FieldError("body", message)])
    return raw


def _too_large(max_bytes: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(f"the body may hold at most {max_bytes} bytes")


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        names = [k for k, _ in pairs]
        raise _DuplicateKey(next(k for k in names if names.count(k) > 1))
    return found


def _reject_duplicate_keys(raw: bytes) -> None:
    """A key sent twice is read differently by different parsers (first or last wins): refuse it.

    The body has already passed pydantic's parser, so this second, stricter read only costs
    a fraction of the first (under a millisecond for a batch of 1000 checks).
    """
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as dup:
        message = f"the key '{dup.args[0]}' appears more than once in one object"
    except (ValueError, RecursionError) as exc:  # what pydantic accepted, the stdlib should too
        message = f"the body is not JSON this service can read: {exc.__class__.__name__}"
    else:
        return
    raise InvalidInput(f"the request is invalid: {message}", [FieldError("body", message)])


def read_query(model: type[BaseModel]) -> Any:
    """Validate the query string against `model` (the first value of a repeated key).

    :raises InvalidInput: naming each bad parameter.
    """
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise invalid(exc) from None


def answer(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def answer_json(payload: dict[str, Any], status: int = 200) -> Response:
    """A body already in the shape of the route's response model, serialized as it is;
    for large answers built from typed values (the schemathesis tests check the shape).
    orjson: a batch of 100 results took 155 us through the stdlib's encoder, about 15 here."""
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def _authenticate(scopes: tuple[Scope, ...]) -> Caller:
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <api key>'")
    found = runtime().keys.authenticate(token.strip())
    if found is None:
        raise Unauthorized("the API key is unknown or revoked")
    if scopes and not found.scopes.intersection(scopes):
        need = " or ".join(s.value for s in scopes)
        raise Forbidden(f"the key '{found.name}' lacks the scope this call needs: {need}")
    return found


def _check_path_ids(path: dict[str, str]) -> None:
    """Path ids follow the same rule as ids in a body (undecodable bytes arrive as U+FFFD)."""
    errors = []
    for name, value in path.items():
        try:
            PATH_ID.validate_python(value)
        except ValidationError:
            errors.append(FieldError(name, f"must be {ID_RULE}"))
    if errors:
        raise InvalidInput("invalid id in the path", errors)


def unauthorized_response(exc: Unauthorized) -> Response:
    response = problem(exc.status, exc.title, exc.detail, exc.code)
    response.headers["WWW-Authenticate"] = 'Bearer realm="contract-access"'
    return response
