"""Choose the SMS sender from settings: Twilio with credentials, the console sender without."""

from __future__ import annotations

import logging

from searchjobs.config import Settings
from searchjobs.errors import ConfigError
from searchjobs.notifications.base import Sender
from searchjobs.notifications.console import ConsoleSender
from searchjobs.notifications.twilio import TwilioSender

log = logging.getLogger(__name__)


def sender_from_settings(settings: Settings) -> Sender:
    if settings.twilio_account_sid or settings.twilio_auth_token:
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise ConfigError("set both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        return TwilioSender(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            api_base_url=settings.twilio_api_base_url,
            timeout=settings.twilio_timeout,
        )
    log.info("no Twilio credentials: SMS are printed by the console sender")
    return ConsoleSender()
