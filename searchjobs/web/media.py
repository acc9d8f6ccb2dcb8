"""Images served back by URL: uploads (unguessable ids) and catalog product images."""

from __future__ import annotations

from flask import Blueprint, Response, redirect

from searchjobs.catalog import store as catalog
from searchjobs.db.engine import translate_errors
from searchjobs.intake import store as image_queries
from searchjobs.web.errors import ApiError
from searchjobs.web.runtime import runtime

bp = Blueprint("media", __name__)


@bp.get("/images/<public_id>")
@translate_errors
def uploaded_image(public_id: str):
    if len(public_id) > 64:
        raise ApiError(404, "not_found", "no such image")
    with runtime().db.connect() as conn:
        image = image_queries.get_by_public_id(conn, public_id)
    if image is None:
        raise ApiError(404, "not_found", "no such image")
    response = Response(bytes(image["data"]), mimetype=image["content_type"])
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(image["sha256"])
    return response


@bp.get("/catalog/images/<sku>")
@translate_errors
def catalog_image(sku: str):
    if len(sku) > 100:
        raise ApiError(404, "not_found", "no such product image")
    with runtime().db.connect() as conn:
        item = catalog.image(conn, sku)
    if item is None:
        raise ApiError(404, "not_found", "no such product image")
    if item["image_data"] is None:
        if item["image_url"]:
            return redirect(item["image_url"], code=302)
        raise ApiError(404, "not_found", "no such product image")
    response = Response(bytes(item["image_data"]), mimetype=item["image_content_type"] or "image/png")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
