"""Settings from environment variables, with the embedded defaults.

Every process reads the same variables; `searchjobs up` fills in DATABASE_URL and
REDIS_URL for its children after it has started the embedded servers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from searchjobs import defaults
from searchjobs.embedded import read_holder, running_stack_urls
from searchjobs.errors import ConfigError


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: dict, name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"{name} must be a number >= {minimum:g}, got {raw!r}")
    return value


def _choice(env: dict, name: str, choices: tuple[str, ...]) -> str:
    """One of `choices`; the first is the default."""
    raw = env.get(name) or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _bool(env: dict, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


def _sms_give_up_hours(env: dict) -> float:
    """The SMS deadline: positive, and within the retention period (a link sent later would not open)."""
    hours = _float(env, "SEARCHJOBS_SMS_GIVE_UP_HOURS", defaults.SMS_GIVE_UP_HOURS)
    retention_days = _int(env, "SEARCHJOBS_RETENTION_DAYS", defaults.RETENTION_DAYS)
    if hours <= 0:
        raise ConfigError(f"SEARCHJOBS_SMS_GIVE_UP_HOURS must be positive, got {hours:g}")
    if hours > retention_days * 24:
        raise ConfigError(f"SEARCHJOBS_SMS_GIVE_UP_HOURS ({hours:g}) must be within the retention period "
                          f"(SEARCHJOBS_RETENTION_DAYS={retention_days}, {retention_days * 24} h)")
    return hours


def _embedder(env: dict) -> str:
    """"descriptor" (the default) or "onnx:<path of an existing file>"; the model itself is checked when a
    process that embeds loads it (searchjobs.catalog.embedders)."""
    raw = (env.get("SEARCHJOBS_EMBEDDER") or "descriptor").strip()
    if raw == "descriptor":
        return raw
    path = raw.removeprefix("onnx:").strip() if raw.startswith("onnx:") else ""
    if not path:
        raise ConfigError(f"SEARCHJOBS_EMBEDDER must be 'descriptor' or 'onnx:/path/to/model.onnx', got {raw!r}")
    if not Path(path).expanduser().is_file():
        raise ConfigError(f"SEARCHJOBS_EMBEDDER={raw}: the model file does not exist")
    return raw


SECRET_KEY_FILE = "secret_key"  # under the data dir, 0600: the SECRET_KEY `searchjobs up` made
DEV_SECRET_KEY = "dev-only-not-secret"  # a placeholder the processes refuse to serve with (check_secret)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None: embedded PostgreSQL under data_dir
    redis_url: str | None = None  # None: embedded Valkey under data_dir
    data_dir: Path = Path(".searchjobs")
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEV_SECRET_KEY
    cache_ttl: int = defaults.CACHE_TTL
    retention_days: int = defaults.RETENTION_DAYS
    job_timeout: int = defaults.JOB_TIMEOUT
    max_attempts: int = defaults.MAX_ATTEMPTS
    lease_seconds: int = defaults.LEASE_SECONDS
    heartbeat_interval: int = defaults.HEARTBEAT_INTERVAL
    reconcile_interval: int = defaults.RECONCILE_INTERVAL
    shutdown_grace: int = 25
    search_backend: str = "pgvector"
    embedder: str = "descriptor"  # or "onnx:/path/model.onnx" (searchjobs.catalog.embedders)
    image_allow_private: bool = False
    image_allow_loopback: bool = False
    allow_anonymous: bool = True
    db_pool_size: int = 5
    db_pool_timeout: float = defaults.DB_POOL_TIMEOUT
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base_url: str | None = None
    twilio_timeout: float = 10.0
    # after an unknown outcome, look the SMS up only TWILIO_TIMEOUT + this after the last send started
    sms_lookup_margin: float = defaults.SMS_LOOKUP_MARGIN
    sms_give_up_hours: float = defaults.SMS_GIVE_UP_HOURS  # never past the retention period (checked)
    sms_auth_retry_seconds: float = defaults.SMS_AUTH_RETRY_SECONDS  # pause between tries refused for credentials
    metrics_token: str | None = None
    log_format: str = "auto"  # "json", "text" or "auto" (text on a terminal)
    rate_limits: bool = True  # SEARCHJOBS_RATE_LIMITS=off disables every limit (see web/limits.py)
    # "durable": every progress step waits for its WAL flush; "fast": intermediate steps don't
    progress_commit: str = "durable"
    rate_limit_keyed: str = "120/minute"  # submits per API key
    rate_limit_anonymous: str = "20/minute"  # submits per client IP without a key
    rate_limit_keyed_reads: str = "1200/minute"  # other /api calls per API key
    rate_limit_anonymous_reads: str = "300/minute"  # other /api calls per client IP without a key
    trusted_proxies: int = 0  # reverse proxies in front that append to X-Forwarded-For (client IP for limits)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("SEARCHJOBS_DATA_DIR") or ".searchjobs"),
            public_base_url=(env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
            secret_key=env.get("SECRET_KEY") or DEV_SECRET_KEY,
            cache_ttl=_int(env, "SEARCHJOBS_CACHE_TTL", defaults.CACHE_TTL),
            retention_days=_int(env, "SEARCHJOBS_RETENTION_DAYS", defaults.RETENTION_DAYS),
            job_timeout=_int(env, "SEARCHJOBS_JOB_TIMEOUT", defaults.JOB_TIMEOUT),
            max_attempts=_int(env, "SEARCHJOBS_MAX_ATTEMPTS", defaults.MAX_ATTEMPTS),
            lease_seconds=_int(env, "SEARCHJOBS_LEASE_SECONDS", defaults.LEASE_SECONDS),
            heartbeat_interval=_int(env, "SEARCHJOBS_HEARTBEAT_INTERVAL", defaults.HEARTBEAT_INTERVAL),
            reconcile_interval=_int(env, "SEARCHJOBS_RECONCILE_INTERVAL", defaults.RECONCILE_INTERVAL),
            shutdown_grace=_int(env, "SEARCHJOBS_SHUTDOWN_GRACE", 25),
            search_backend=env.get("SEARCHJOBS_SEARCH_BACKEND") or "pgvector",
            embedder=_embedder(env),
            image_allow_private=_bool(env, "SEARCHJOBS_IMAGE_ALLOW_PRIVATE", False),
            image_allow_loopback=_bool(env, "SEARCHJOBS_IMAGE_ALLOW_LOOPBACK", False),
            allow_anonymous=_bool(env, "SEARCHJOBS_ALLOW_ANONYMOUS", True),
            db_pool_size=_int(env, "SEARCHJOBS_DB_POOL_SIZE", 5),
            db_pool_timeout=_float(env, "SEARCHJOBS_DB_POOL_TIMEOUT", defaults.DB_POOL_TIMEOUT, minimum=0.1),
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
            twilio_from_number=env.get("TWILIO_FROM_NUMBER") or None,
            twilio_messaging_service_sid=env.get("TWILIO_MESSAGING_SERVICE_SID") or None,
            twilio_api_base_url=env.get("TWILIO_API_BASE_URL") or None,
            twilio_timeout=float(env.get("TWILIO_TIMEOUT") or 10.0),
            sms_lookup_margin=_float(env, "SEARCHJOBS_SMS_LOOKUP_MARGIN", defaults.SMS_LOOKUP_MARGIN),
            sms_give_up_hours=_sms_give_up_hours(env),
            sms_auth_retry_seconds=_float(env, "SEARCHJOBS_SMS_AUTH_RETRY_SECONDS",
                                          defaults.SMS_AUTH_RETRY_SECONDS, minimum=0.1),
            metrics_token=env.get("SEARCHJOBS_METRICS_TOKEN") or None,
            log_format=env.get("SEARCHJOBS_LOG_FORMAT") or "auto",
            rate_limits=_bool(env, "SEARCHJOBS_RATE_LIMITS", True),
            progress_commit=_choice(env, "SEARCHJOBS_PROGRESS_COMMIT", ("durable", "fast")),
            rate_limit_keyed=env.get("SEARCHJOBS_RATE_LIMIT_KEYED") or "120/minute",
            rate_limit_anonymous=env.get("SEARCHJOBS_RATE_LIMIT_ANONYMOUS") or "20/minute",
            rate_limit_keyed_reads=env.get("SEARCHJOBS_RATE_LIMIT_KEYED_READS") or "1200/minute",
            rate_limit_anonymous_reads=env.get("SEARCHJOBS_RATE_LIMIT_ANONYMOUS_READS") or "300/minute",
            trusted_proxies=_int(env, "SEARCHJOBS_TRUSTED_PROXIES", 0),
        )

    @classmethod
    def for_process(cls) -> Settings:
        """The settings of a searchjobs process, whatever its type (web under gunicorn, worker,
        scheduler, a CLI command), by one rule: the environment first; what it leaves unset comes from
        the data folder (SEARCHJOBS_DATA_DIR, else ./.searchjobs): the two URLs and the web's URL
        (PUBLIC_BASE_URL) of the `searchjobs up` running there, and the SECRET_KEY that `up` keeps there.

        Without either, the URLs stay unset and the process says so at start (require_urls).
        """
        settings = cls.from_env()
        if not settings.database_url or not settings.redis_url:
            urls = running_stack_urls(settings.data_dir)
            if urls is not None:
                settings = settings.with_urls(settings.database_url or urls[0], settings.redis_url or urls[1])
        if not os.environ.get("PUBLIC_BASE_URL"):
            # result links (pages, SMS) point at the running `up`'s web, which answers them
            web_url = (read_holder(settings.data_dir) or {}).get("web_url")
            if web_url:
                settings = replace(settings, public_base_url=web_url)
        if settings.secret_key == DEV_SECRET_KEY:
            kept = settings.data_dir / SECRET_KEY_FILE
            if kept.is_file():
                settings = replace(settings, secret_key=kept.read_text().strip())
        return settings

    @property
    def embedded(self) -> bool:
        """True when either server still has to come from the embedded default."""
        return self.database_url is None or self.redis_url is None

    def check_secret(self) -> None:
        """Result-link tokens are derived from SECRET_KEY: a known key would make them guessable."""
        if self.secret_key == DEV_SECRET_KEY:
            raise ConfigError("SECRET_KEY must be set to a long random value (it signs result links); "
                              "`searchjobs up` makes one for you")

    def with_urls(self, database_url: str, redis_url: str) -> Settings:
        return replace(self, database_url=database_url, redis_url=redis_url)

    def require_urls(self) -> tuple[str, str]:
        """The two server URLs; processes other than `up` need both."""
        if not self.database_url or not self.redis_url:
            raise ConfigError(
                "DATABASE_URL and REDIS_URL must be set (or run `searchjobs up`, which starts "
                "embedded servers and sets them for its processes)"
            )
        return self.database_url, self.redis_url
