"""bot/settings.py: every setting validated in one place; errors name the variable and hide secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.errors import ConfigError
from bot.settings import Settings, load_settings

BOT_TOKEN = "xoxb-1111-2222-verysecretbottoken"
SIGNING_SECRET = "0123456789abcdefsigningsecret"
APP_TOKEN = "xapp-1-A111-2222-verysecretapptoken"


def set_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    set_secrets(monkeypatch)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    for secret in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN):
        assert secret not in message
    return message


def test_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.drill_schedule == "0 10 * * 1-5"
    assert settings.drill_timezone == "UTC"
    assert settings.drill_answer_window == timedelta(hours=6)
    assert settings.drill_managers == frozenset()
    assert settings.port == 3000
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.slack_bot_token is None and settings.drill_channel is None


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch)
    monkeypatch.setenv("DRILL_CHANNEL", "C0123")
    monkeypatch.setenv("DRILL_SCHEDULE", "30  9 * * 1-5")
    monkeypatch.setenv("DRILL_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("DRILL_ANSWER_WINDOW", "1h30m")
    monkeypatch.setenv("PORT", "8080")
    settings = load_settings()
    assert settings.drill_channel == "C0123"
    assert settings.drill_schedule == "30 9 * * 1-5"
    assert settings.drill_timezone == "Europe/Berlin"
    assert settings.tz.key == "Europe/Berlin"
    assert settings.drill_answer_window == timedelta(minutes=90)
    assert settings.schedule.window == timedelta(minutes=90)
    assert settings.schedule.crontab == "30 9 * * 1-5"
    assert settings.port == 8080
    assert isinstance(settings.slack_bot_token, SecretStr)
    assert settings.slack_bot_token.get_secret_value() == BOT_TOKEN


def test_reads_a_dot_env_file_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The autouse fixture chdirs to tmp_path, so this .env is the one load_settings() sees.
    (tmp_path / ".env").write_text("DRILL_TIMEZONE=Europe/Berlin\nDRILL_CHANNEL=CFROMFILE\nPORT=4000\n")
    monkeypatch.setenv("PORT", "5000")
    settings = load_settings()
    assert settings.drill_timezone == "Europe/Berlin"
    assert settings.drill_channel == "CFROMFILE"
    assert settings.port == 5000


def test_an_invalid_dot_env_value_is_a_config_error_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DRILL_ANSWER_WINDOW=forever\n")
    with pytest.raises(ConfigError, match="^DRILL_ANSWER_WINDOW: 'forever' is not a duration"):
        load_settings()


@pytest.mark.parametrize("value", ["Mars/Base", "CEST", "europe/berlin", ""])
def test_bad_timezone_names_drill_timezone(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    message = config_error(monkeypatch, DRILL_TIMEZONE=value)
    assert message.startswith("DRILL_TIMEZONE: ")
    assert "IANA" in message and "Europe/Berlin" in message


@pytest.mark.parametrize(("value", "hint"), [("0 10 * *", "5"), ("61 10 * * *", "not a valid crontab"), ("daily", "5")])
def test_bad_schedule_names_drill_schedule(monkeypatch: pytest.MonkeyPatch, value: str, hint: str) -> None:
    message = config_error(monkeypatch, DRILL_SCHEDULE=value)
    assert message.startswith("DRILL_SCHEDULE: ")
    assert hint in message and repr(value) in message


def test_drill_schedule_off_means_no_scheduled_drills(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILL_SCHEDULE", " Off ")
    settings = load_settings()
    assert settings.drill_schedule == "off"
    new_year = datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert not settings.schedule.is_due(new_year)
    assert settings.schedule.next_slot(new_year) is None


def test_a_bad_schedule_mentions_off(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, DRILL_SCHEDULE="never")
    assert message.startswith("DRILL_SCHEDULE: ") and "off" in message


@pytest.mark.parametrize("value", ["6x", "0s", "-1h", "", "6", "99999999999d"])
def test_bad_window_names_drill_answer_window(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    message = config_error(monkeypatch, DRILL_ANSWER_WINDOW=value)
    assert message.startswith("DRILL_ANSWER_WINDOW: ")


@pytest.mark.parametrize("value", ["abc", "-1", "65536", "3000.5"])
def test_bad_port_names_port(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    message = config_error(monkeypatch, PORT=value)
    assert message.startswith("PORT: ")


def test_bad_api_url_names_slack_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, SLACK_API_URL="ftp://slack.example/api")
    assert message.startswith("SLACK_API_URL: ") and "http" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("U1", {"U1"}),
        ("U1,U2", {"U1", "U2"}),
        (" U1 , U2 ,, U3 ,", {"U1", "U2", "U3"}),
        ("U1,U1", {"U1"}),
        ("", set()),
        (" , ", set()),
    ],
)
def test_drill_managers_comma_parsing(monkeypatch: pytest.MonkeyPatch, value: str, expected: set[str]) -> None:
    monkeypatch.setenv("DRILL_MANAGERS", value)
    assert load_settings().drill_managers == frozenset(expected)


def test_drill_managers_is_not_parsed_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILL_MANAGERS", '["U1","U2"]')
    # NoDecode: the value is split on commas, never JSON-decoded (so no crash on a plain list either).
    assert load_settings().drill_managers == frozenset({'["U1"', '"U2"]'})


def test_secrets_are_secretstr_and_hidden_from_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch)
    settings = load_settings()
    for name in ("slack_bot_token", "slack_signing_secret", "slack_app_token"):
        assert isinstance(getattr(settings, name), SecretStr)
    for rendering in (repr(settings), str(settings), settings.model_dump_json()):
        for secret in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN):
            assert secret not in rendering
    assert settings.slack_signing_secret is not None
    assert settings.slack_signing_secret.get_secret_value() == SIGNING_SECRET
    assert settings.slack_app_token is not None and settings.slack_app_token.get_secret_value() == APP_TOKEN


def test_config_error_does_not_contain_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, DRILL_TIMEZONE="Nowhere/Land", PORT="nope")
    assert "DRILL_TIMEZONE" in message or "PORT" in message


def test_empty_secrets_and_channel_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "   ")
    monkeypatch.setenv("DRILL_CHANNEL", "")
    settings = load_settings()
    assert settings.slack_bot_token is None and settings.slack_signing_secret is None
    assert settings.drill_channel is None


def test_require_names_the_missing_variable_with_a_hint() -> None:
    settings = Settings(_env_file=None, slack_bot_token=BOT_TOKEN)  # type: ignore[call-arg]
    settings.require("slack_bot_token")  # set: no error
    with pytest.raises(ConfigError, match=r"^SLACK_SIGNING_SECRET is not set; .*Signing Secret"):
        settings.require("slack_bot_token", "slack_signing_secret", "drill_channel")
    with pytest.raises(ConfigError, match=r"^DRILL_CHANNEL is not set"):
        settings.require("drill_channel")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://slack.com/api", "https://slack.com/api/"),
        ("https://slack.com/api/", "https://slack.com/api/"),
        ("http://127.0.0.1:9999", "http://127.0.0.1:9999/"),
    ],
)
def test_slack_api_url_gets_a_trailing_slash(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("SLACK_API_URL", value)
    assert load_settings().slack_api_url == expected


def test_overrides_win_and_are_validated_too() -> None:
    settings = load_settings(_env_file=None, drill_answer_window="45s", drill_managers="UA,UB")
    assert settings.drill_answer_window == timedelta(seconds=45)
    assert settings.drill_managers == {"UA", "UB"}
    with pytest.raises(ConfigError, match="^DRILL_TIMEZONE: "):
        load_settings(_env_file=None, drill_timezone="Atlantis")


def test_metrics_listener_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.metrics_port is None  # no metrics listener unless asked for
    assert defaults.metrics_host == "127.0.0.1"
    assert defaults.drill_slow_request_ms == 500
    monkeypatch.setenv("METRICS_PORT", "9300")
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("DRILL_SLOW_REQUEST_MS", "0")
    settings = load_settings()
    assert (settings.metrics_port, settings.metrics_host, settings.drill_slow_request_ms) == (9300, "0.0.0.0", 0)
    monkeypatch.setenv("METRICS_PORT", "")
    monkeypatch.setenv("METRICS_HOST", " ")
    settings = load_settings()
    assert settings.metrics_port is None and settings.metrics_host == "127.0.0.1"


@pytest.mark.parametrize(("name", "value"), [("METRICS_PORT", "abc"), ("METRICS_PORT", "70000"),
                                             ("DRILL_SLOW_REQUEST_MS", "-5"), ("DRILL_SLOW_REQUEST_MS", "fast")])
def test_bad_server_settings_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    assert config_error(monkeypatch, **{name: value}).startswith(f"{name}: ")
