"""Who is calling: an API client (Authorization: Bearer <key>) or an anonymous visitor."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request

from searchjobs import clients
from searchjobs.web.errors import ApiError
from searchjobs.web.runtime import runtime


@dataclass(frozen=True)
class Caller:
    client_id: int | None = None
    name: str | None = None
    is_admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.client_id is None

    def owns(self, view: dict) -> bool:
        """May see everything of this job (results included) and change it."""
        return self.is_admin or (self.client_id is not None and view.get("client_id") == self.client_id)

    def may_see(self, view: dict) -> bool:
        """May see the status of this job: its owner, an admin, or anyone with the id of an anonymous job."""
        return self.owns(view) or view.get("client_id") is None


ANONYMOUS = Caller()
KEY_CACHE = "searchjobs.api_keys"  # app.extensions key of this app's clients.KeyCache


def key_cache() -> clients.KeyCache:
    cache = current_app.extensions.get(KEY_CACHE)
    if cache is None:
        cache = current_app.extensions.setdefault(KEY_CACHE, clients.KeyCache())
    return cache


def current_caller() -> Caller:
    """The caller of this request, authenticated once per request."""
    if "caller" in g:
        return g.caller
    header = request.headers.get("Authorization")
    if header is None:
        g.caller = ANONYMOUS
        return g.caller
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "invalid_authorization", "use Authorization: Bearer <api key>")
    client = key_cache().authenticate(runtime().db.connect, key.strip())
    if client is None:
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
    g.caller = Caller(client_id=client["id"], name=client["name"], is_admin=client["is_admin"])
    return g.caller


def require_submitter() -> Caller:
    caller = current_caller()
    if caller.anonymous and not runtime().settings.allow_anonymous:
        raise ApiError(401, "api_key_required", "this service requires an API key (Authorization: Bearer <key>)")
    return caller
