"""Ids in the path: each is one segment, percent-encoded, and may hold '/' and '%'.

An id may hold any printable character (`authz.text.Id`): ASPIRE's account numbers may hold
'/', and a client sends it as %2F (`authz.client` quotes every character). The server
decodes PATH_INFO whole before routing (WSGI), so %2F would arrive as a '/' that ends the
segment: an account with such an id could be linked (its id is in the body) but not
unlinked, the route not found. So the path is routed as the client sent it
(`keep_escaped_slashes`): each segment decoded, but for '/' and '%', kept as %2F and %25;
the `id` converter then decodes those two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes, urlsplit

from flask import Blueprint
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class IdConverter(BaseConverter):
    """One segment of the path, an id: its %2F and %25 are '/' and '%' of the id."""

    regex = "[^/]+"
    part_isolating = True

    def to_python(self, value: str) -> str:
        return unquote(value)

    def to_url(self, value: str) -> str:
        return quote(value, safe="")


def id_routes(name: str, import_name: str) -> Blueprint:
    """A blueprint whose routes may take ids (`<id:user_id>`): the app it is registered on
    gets the `id` converter first."""
    bp = Blueprint(name, import_name)
    bp.record_once(_add_converter)
    return bp


def _add_converter(state: BlueprintSetupState) -> None:
    state.app.url_map.converters["id"] = IdConverter


def keep_escaped_slashes(app: WsgiApp) -> WsgiApp:
    """`app` routed on the path as sent (`RAW_URI` from gunicorn, `REQUEST_URI` from
    others), '/' and '%' inside a segment kept escaped; where the path as sent is not
    known, PATH_INFO with its '%' escaped (a '/' in it then is a separator)."""

    def routed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["PATH_INFO"] = routed_path(environ)
        return app(environ, start_response)

    return routed


def routed_path(environ: dict[str, Any]) -> str:
    """PATH_INFO (a WSGI string: bytes as latin-1) with '/' and '%' inside a segment
    escaped, when the path as sent says where they were; otherwise its '%' escaped."""
    decoded: str = environ.get("PATH_INFO", "")
    sent = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if sent is not None and "%" not in sent:
        return decoded  # nothing was escaped: what was sent is what was decoded
    if not sent:
        return decoded.replace("%", "%25")
    path = urlsplit(sent).path if sent.startswith(("http://", "https://")) else sent
    path = path.partition("?")[0]
    kept = "/".join(
        unquote_to_bytes(part).decode("latin-1").replace("%", "%25").replace("/", "%2F")
        for part in path.split("/")
    )
    script = environ.get("SCRIPT_NAME", "")
    if script and kept.startswith(script):
        kept = kept[len(script) :]
    if unquote_to_bytes(kept.encode("latin-1")).decode("latin-1") != decoded:
        return decoded.replace("%", "%25")  # rewritten on the way (a proxy, a mount)
    return kept
