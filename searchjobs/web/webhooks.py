"""Twilio status callbacks: delivery reports recorded on the SMS outbox, moving forward only.

Twilio signs each callback (X-Twilio-Signature) over the URL it called and the
POSTed form. That URL is the one we passed as StatusCallback, built from
PUBLIC_BASE_URL, so the signature is checked against PUBLIC_BASE_URL + path +
query string: behind a proxy the Host header says where the request arrived,
not what Twilio signed, and trusting it would let a client choose the URL.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request
from twilio.request_validator import RequestValidator

from searchjobs import metrics
from searchjobs.db.engine import translate_errors
from searchjobs.notifications import outbox
from searchjobs.web.errors import error_response
from searchjobs.web.runtime import runtime

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
INVALID_SIGNATURE = "invalid_signature"  # stable error code of every refused callback


def public_url() -> str:
    """The URL Twilio requested, as it signed it: PUBLIC_BASE_URL, the path, and the query string if any."""
    url = runtime().settings.public_base_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return url


def signature_problem() -> str | None:
    """Why the request is not a genuine Twilio callback for this account, or None if it is."""
    token = runtime().settings.twilio_auth_token
    if not token:
        return "no TWILIO_AUTH_TOKEN configured"
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return "missing signature"
    if not RequestValidator(token).validate(public_url(), request.form, signature):
        return "bad signature"
    return None


@bp.post("/webhooks/twilio/status")
@translate_errors
def twilio_status():
    problem = signature_problem()
    if problem is not None:
        log.warning("twilio callback refused: %s", problem, extra={"path": request.path})
        return error_response(403, INVALID_SIGNATURE, "the Twilio signature is missing or invalid")

    form = request.form
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not status:
        return error_response(400, "invalid_callback", "MessageSid and MessageStatus are required")
    error_code = form.get("ErrorCode") or None  # only failed/undelivered reports carry one
    context = {"sid": sid, "provider_status": status, "error_code": error_code}

    with runtime().db.connect() as conn:
        applied = outbox.apply_provider_status(conn, sid, status, error_code)
        known = applied or outbox.has_provider_sid(conn, sid)
    if not known:
        # 200 all the same: Twilio would retry an error, and no retry can make the sid known
        log.warning("twilio callback for an unknown message sid", extra=context)
    elif applied:
        metrics.SMS_DELIVERY_REPORTS.labels(status).inc()
        log.info("sms delivery status recorded", extra=context)
    else:
        log.info("sms delivery status ignored (duplicate, out of order, or unknown status)", extra=context)
    return jsonify({"recorded": applied})
