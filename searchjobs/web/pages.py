"""The pages people see: `/` to submit a photo, `/r/<token>` for progress and results.

The submit page posts to the JSON API with fetch and then goes to the job's
result link, so "the job page" and the page the SMS links to are one page:
progress while the job runs, results when it is done. Both pages render on
the server; small static scripts add the live parts (no build step, no inline
script, see security.py).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import phonenumbers
from flask import Blueprint, render_template
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from searchjobs import defaults
from searchjobs.catalog.demo import DEMO_LABEL, SKU_PREFIX
from searchjobs.errors import DependencyUnavailable
from searchjobs.intake import ALLOWED_CONTENT_TYPES, MAX_IMAGE_BYTES
from searchjobs.web.api import result_job
from searchjobs.web.catalog_view import catalog_categories, catalog_loading

bp = Blueprint("pages", __name__)

# A short list of common calling codes; anything else can be typed with a leading "+".
COUNTRIES = (
    ("1", "United States / Canada (+1)"),
    ("44", "United Kingdom (+44)"),
    ("33", "France (+33)"),
    ("49", "Germany (+49)"),
    ("34", "Spain (+34)"),
    ("39", "Italy (+39)"),
    ("31", "Netherlands (+31)"),
    ("32", "Belgium (+32)"),
    ("41", "Switzerland (+41)"),
    ("351", "Portugal (+351)"),
    ("353", "Ireland (+353)"),
    ("46", "Sweden (+46)"),
    ("48", "Poland (+48)"),
    ("61", "Australia (+61)"),
    ("91", "India (+91)"),
    ("55", "Brazil (+55)"),
    ("52", "Mexico (+52)"),
    ("81", "Japan (+81)"),
)



def example_mobile(calling_code: str) -> str:
    """A mobile number of that country as its people write it ("06 12 34 56 78" for 33): the form's hint."""
    region = phonenumbers.region_code_for_country_code(int(calling_code))
    return phonenumbers.format_number(phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE),
                                      PhoneNumberFormat.NATIONAL)


# (calling code, name, example mobile number) for the form's country list
COUNTRY_OPTIONS = tuple((code, name, example_mobile(code)) for code, name in COUNTRIES)

# The stages of jobs.search in words (searched:<category> is handled in stage_text).
STAGE_WORDS = {
    "queued": "Waiting for a free worker",
    "claimed": "Starting the search",
    "image_loaded": "Photo received",
    "features": "Looking at your photo",
    "searched": "Searched",
    "ranked": "Ranking the matches",
    "done": "Done",
}
STATUS_WORDS = {
    "pending": "Waiting to start",
    "processing": "Searching",
    "completed": "Your results are ready",
    "failed": "The search failed",
    "cancelled": "The search was cancelled",
}
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
LOADING_REFRESH_SECONDS = 2  # the catalog-loading page reloads itself this often (a Refresh header: no script)


def stage_text(stage: str | None) -> str:
    name, _, category = (stage or "queued").partition(":")
    words = STAGE_WORDS.get(name, "Working")
    return f"{words} {category}" if category else words


def price_text(price, currency: str | None) -> str:
    try:
        amount = f"{Decimal(str(price)):.2f}"
    except (InvalidOperation, ValueError):
        amount = str(price)
    symbol = CURRENCY_SYMBOLS.get(currency or "")
    return f"{symbol}{amount}" if symbol else f"{amount} {currency or ''}".strip()


def result_groups(view: dict) -> list[dict]:
    """Results as the page shows them: one group per category, in the order asked."""
    by_category = (view.get("results") or {}).get("categories") or {}
    groups = []
    for category in view.get("categories") or by_category.keys():
        cards = [
            {
                "name": hit.get("name"),
                "image_url": hit.get("image_url"),
                "price": price_text(hit.get("price"), hit.get("currency")),
                "score": round(float(hit.get("score") or 0) * 100),
                "demo": str(hit.get("sku", "")).startswith(SKU_PREFIX + "-"),
            }
            for hit in by_category.get(category, [])
        ]
        groups.append({"category": category, "cards": cards})
    return groups


@bp.get("/")
def submit_page():
    load = catalog_loading()
    if load is not None:
        # a page that says so, not an empty category list: 200, as the page works; the API says 503
        page = render_template("catalog_loading.html", load=load, demo_label=DEMO_LABEL,
                               refresh_seconds=LOADING_REFRESH_SECONDS)
        return page, 200, {"Refresh": str(LOADING_REFRESH_SECONDS), "Cache-Control": "no-store"}
    return render_template(
        "submit.html",
        categories=catalog_categories(),
        countries=COUNTRY_OPTIONS,
        max_categories=defaults.MAX_CATEGORIES,
        max_image_bytes=MAX_IMAGE_BYTES,
        image_types=",".join(sorted(ALLOWED_CONTENT_TYPES)),
    )


@bp.get("/r/<token>")
def result_page(token: str):
    view, _ = result_job(token)
    if view is None:
        return not_found()
    groups = result_groups(view) if view["status"] == "completed" else []
    body = render_template(
        "result.html",
        view=view,
        token=token,
        groups=groups,
        any_demo=any(card["demo"] for group in groups for card in group["cards"]),
        demo_label=DEMO_LABEL,
        status_text=STATUS_WORDS.get(view["status"], view["status"]),
        stage_text=stage_text(view["stage"]),
        stage_words=STAGE_WORDS,
        status_words=STATUS_WORDS,
        finished=view["status"] in ("completed", "failed", "cancelled"),
    )
    # the URL is the only key to this page: keep it out of shared caches
    return body, 200, {"Cache-Control": "private, no-store"}


def not_found():
    return render_template("message.html", title="Link not found",
                           message="This result link is not valid, or the search has been deleted."), 404


@bp.errorhandler(DependencyUnavailable)
def _unavailable(exc: DependencyUnavailable):
    page = render_template("message.html", title="Temporarily unavailable",
                           message="We can't reach our database right now. Please try again in a moment.")
    return page, 503, {"Retry-After": str(defaults.RETRY_AFTER_SECONDS)}
