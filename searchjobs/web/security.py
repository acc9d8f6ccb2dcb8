"""Security headers on every response: strict for pages, harmless for the JSON API.

- CSP: everything from our own origin, no inline script (the pages' JS lives in
  /static); images also from https: (catalog image URLs may point at a CDN) and
  blob: (the submit page previews the chosen photo before upload); /docs
  also takes data: images (DOCS_CONTENT_SECURITY_POLICY).
- No framing (clickjacking), no MIME sniffing.
- Referrer-Policy no-referrer: a result page's URL holds its token, and
  following a link or loading a product image must not leak it.
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' https: blob:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
    "frame-ancestors 'none'",
])

# /docs only: Swagger UI's stylesheet draws its icons as data: images. An image cannot run script, so this
# widens nothing that matters; scripts stay 'self' only.
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace("img-src 'self' https: blob:",
                                                               "img-src 'self' https: blob: data:")

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def init_app(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
