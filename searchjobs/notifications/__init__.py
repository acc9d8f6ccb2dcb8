"""SMS notifications: phone numbers, message texts, and senders.

TwilioSender is not re-exported: importing it loads the twilio library, which most callers do not need.
"""

from searchjobs.notifications.base import (
    CredentialsRejectedError,
    PermanentSendError,
    RetryableSendError,
    Sender,
    SendError,
    SentMessage,
    UnknownOutcomeError,
)
from searchjobs.notifications.console import ConsoleSender
from searchjobs.notifications.messages import MAX_SMS_LENGTH, body_sha256, mask_link, result_message
from searchjobs.notifications.phone import InvalidPhoneNumber, mask, normalize

__all__ = [
    "MAX_SMS_LENGTH",
    "ConsoleSender",
    "CredentialsRejectedError",
    "InvalidPhoneNumber",
    "PermanentSendError",
    "RetryableSendError",
    "SendError",
    "Sender",
    "SentMessage",
    "UnknownOutcomeError",
    "body_sha256",
    "mask",
    "mask_link",
    "normalize",
    "result_message",
]
