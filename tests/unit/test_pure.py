"""Pure logic: settings, links, backoff, the public view."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from searchjobs import links
from searchjobs.config import Settings
from searchjobs.errors import ConfigError
from searchjobs.jobs.cache import job_view
from searchjobs.queue import backoff_delay


def test_settings_from_env_defaults_and_overrides():
    settings = Settings.from_env({})
    assert settings.database_url is None and settings.embedded
    assert settings.cache_ttl == 3600 and settings.retention_days == 7
    custom = Settings.from_env({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://r", "SEARCHJOBS_CACHE_TTL": "60",
                                "PUBLIC_BASE_URL": "https://shop.example/", "SEARCHJOBS_ALLOW_ANONYMOUS": "no"})
    assert not custom.embedded and custom.cache_ttl == 60
    assert custom.public_base_url == "https://shop.example" and custom.allow_anonymous is False
    assert custom.require_urls() == ("postgresql://x/y", "redis://r")


@pytest.mark.parametrize("env", [{"SEARCHJOBS_CACHE_TTL": "soon"}, {"SEARCHJOBS_ALLOW_ANONYMOUS": "maybe"}])
def test_bad_settings_are_clear_errors(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_processes_other_than_up_need_both_urls():
    with pytest.raises(ConfigError, match="DATABASE_URL and REDIS_URL"):
        Settings.from_env({"DATABASE_URL": "postgresql://x/y"}).require_urls()


def test_result_tokens_are_unguessable_stable_and_hashed():
    job_id = links.new_job_id()
    token = links.result_token("secret", job_id)
    assert token == links.result_token("secret", job_id)  # the worker rebuilds it for the SMS
    assert token != links.result_token("other secret", job_id)
    assert links.looks_like_token(token) and len(token) == 43  # 256 bits, URL-safe
    assert links.token_hash(token) != token and len(links.token_hash(token)) == 64
    ids = {links.new_job_id() for _ in range(2000)}
    assert len(ids) == 2000 and all(i[0].isalnum() for i in ids)  # never read as a CLI option
    body = links.render_sms("Your search results are ready: {link}", "secret", "https://x.example", job_id)
    assert body == f"Your search results are ready: https://x.example/r/{token}"


def test_backoff_grows_with_jitter_and_is_capped():
    for attempt in range(1, 10):
        delay = backoff_delay(attempt, base=2.0, cap=60.0)
        assert 1.0 <= delay <= min(60.0, 2.0 * 2 ** (attempt - 1))
    assert len({round(backoff_delay(5), 6) for _ in range(20)}) > 1


def test_public_view_has_no_phone_number():
    now = datetime.now(UTC)
    row = {"job_id": "j", "status": "pending", "progress": 0, "stage": "queued", "version": 1, "attempts": 0,
           "categories": ["dress"], "phone_number": "+33612345678", "cancel_requested": False, "error": None,
           "error_code": None, "results": None, "original_image_url": None, "client_id": None,
           "created_at": now, "updated_at": now, "started_at": None, "finished_at": None}
    view = job_view(row)
    assert view["sms"] is True and "612345678" not in str(view)


def test_processes_refuse_the_placeholder_secret():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_env({}).check_secret()
    Settings.from_env({"SECRET_KEY": "a-long-random-value"}).check_secret()


def test_a_public_url_too_long_for_one_sms_segment_is_refused_at_start():
    from searchjobs.jobs.search import check_sms_fits

    check_sms_fits("https://shop.example.com")
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        check_sms_fits("https://" + "very-long-host." * 10 + "example.com")
