"""The one `Settings` class: every environment variable drillbot reads, validated in one place.

Settings come from the environment or a `.env` file in the working directory. They are built by
`load_settings()` and passed in; nothing reads the environment at import time, so tests build their own.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.domain.schedule import Schedule, parse_crontab, parse_schedule, parse_timezone, parse_window
from bot.errors import ConfigError

__all__ = [
    "CHANNEL_ID_HINT",
    "EXAMPLE_VALUES",
    "Settings",
    "channel_problem",
    "inspect_settings",
    "load_settings",
    "looks_like_channel_id",
]

# The values `.env.example` ships with: left unchanged they are placeholders, never real settings (a test
# keeps this table equal to the file).
EXAMPLE_VALUES: dict[str, str] = {
    "slack_bot_token": "xoxb-your-bot-token",
    "slack_signing_secret": "your-signing-secret",
    "slack_app_token": "xapp-your-app-token",
    "drill_channel": "C0123456789",
}
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    drill_channel: str | None = None
    drill_schedule: str = "0 10 * * 1-5"
    drill_timezone: str = "UTC"
    drill_answer_window: timedelta = timedelta(hours=6)
    drill_managers: Annotated[frozenset[str], NoDecode] = frozenset()
    database_url: str = "sqlite:///drills.db"
    questions_file: str = "questions.yaml"
    port: int = Field(default=3000, ge=0, le=65535)
    # Prometheus metrics on a listener of their own, never on the public Slack port; unset: no listener.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback by default: a metrics port opened on every interface of a host is public unless a firewall
    # says otherwise. Containers set 0.0.0.0 (their network is private; the port is not published).
    metrics_host: str = "127.0.0.1"
    # A request slower than this logs its access line at INFO (failed ones always do); 0: every request.
    drill_slow_request_ms: int = Field(default=500, ge=0)
    drill_sealed: bool = False
    drill_reminder: timedelta | None = None
    drill_skip_dates: Annotated[frozenset[date], NoDecode] = frozenset()
    drill_programs_file: str | None = None
    drill_digest: str | None = None
    drill_log_format: Literal["text", "json"] = "text"
    # The optional grader: an OpenAI-compatible chat-completions endpoint (see bot/grader.py).
    drill_grader_url: str | None = None
    drill_grader_model: str | None = None
    drill_grader_api_key: SecretStr | None = None
    # At most this many answers of one drill are sent to the grader (a cost bound); the rest get no pre-ticks.
    drill_grader_max_per_drill: int = Field(default=30, ge=0)
    # One grading request, retries included, gives up after about this long (the checklist then has no pre-ticks).
    drill_grader_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    # How often the scheduler reconciles the database with Slack (post what is due, reveal what is
    # overdue). Not part of the documented contract; tests and benchmarks lower it.
    drill_tick_seconds: float = Field(default=1.0, gt=0, le=60)

    @field_validator(
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "drill_channel",
        "drill_programs_file",
        "metrics_port",
        "drill_grader_url",
        "drill_grader_model",
        "drill_grader_api_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("drill_grader_url", mode="after")
    @classmethod
    def _grader_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1")
        return value

    @field_validator("metrics_host", mode="before")
    @classmethod
    def _default_metrics_host(cls, value: Any) -> Any:
        return (value.strip() or "127.0.0.1") if isinstance(value, str) else value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("drill_timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        parse_timezone(value)
        return value.strip()

    @field_validator("drill_answer_window", mode="before")
    @classmethod
    def _parse_window(cls, value: Any) -> Any:
        return parse_window(value) if isinstance(value, str) else value

    @field_validator("drill_reminder", mode="before")
    @classmethod
    def _parse_reminder(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_window(value) if value.strip() else None
        return value

    @field_validator("drill_skip_dates", mode="before")
    @classmethod
    def _split_dates(cls, value: Any) -> Any:
        if isinstance(value, str):
            days = set()
            for part in (p.strip() for p in value.split(",")):
                if not part:
                    continue
                try:
                    days.add(date.fromisoformat(part))
                except ValueError:
                    raise ValueError(f"{part!r} is not an ISO date (YYYY-MM-DD)") from None
            return frozenset(days)
        return value

    @field_validator("drill_digest", mode="before")
    @classmethod
    def _valid_digest(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_crontab(value) if value.strip() else None
        return value

    @field_validator("drill_log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("drill_managers", mode="before")
    @classmethod
    def _split_managers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("drill_schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        return parse_schedule(value)

    @property
    def tz(self) -> ZoneInfo:
        return parse_timezone(self.drill_timezone)

    @property
    def schedule(self) -> Schedule:
        return Schedule(
            crontab=self.drill_schedule, tz=self.tz, window=self.drill_answer_window, skip_dates=self.drill_skip_dates
        )

    @property
    def program_defaults(self) -> dict[str, Any]:
        """What a DRILL_PROGRAMS_FILE program leaves out comes from these settings (its loader's keywords)."""
        return {
            "default_schedule": self.drill_schedule,
            "default_timezone": self.drill_timezone,
            "default_window": self.drill_answer_window,
            "skip_dates": self.drill_skip_dates,
        }

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the first of `names` (field names) that is not set or still a placeholder."""
        for name in names:
            problem = self.missing(name)
            if problem:
                raise ConfigError(problem)

    def missing(self, name: str) -> str | None:
        """Why setting `name` (a field name) cannot be used: unset, or left at the `.env.example` value."""
        value = getattr(self, name)
        hint = _HINTS.get(name, "set it in the environment or .env")
        if value is None:
            return f"{name.upper()} is not set; {hint}"
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if name in EXAMPLE_VALUES and text == EXAMPLE_VALUES[name]:
            return f"{name.upper()} is still the placeholder from .env.example; {hint}"
        return None

    @property
    def mode(self) -> Literal["http", "socket"]:
        """How `drillbot run` connects when no flag says: Socket Mode when SLACK_APP_TOKEN is set, else HTTP."""
        return "socket" if self.slack_app_token is not None else "http"


def looks_like_channel_id(value: str) -> bool:
    """C0123ABCD (public), G... (private, older), D... (DM): an ID, not a channel name like #drills."""
    return bool(_CHANNEL_ID.match(value))


def channel_problem(value: str) -> str | None:
    """Why `value` cannot be a drill channel: the `.env.example` placeholder, or a name where the ID is needed
    (with how to find the ID); None when it looks like a channel ID."""
    if value == EXAMPLE_VALUES["drill_channel"]:
        return f"is still the placeholder from .env.example ({value}); {CHANNEL_ID_HINT}"
    if not looks_like_channel_id(value):
        return f"{value!r} is a channel name, not its ID; {CHANNEL_ID_HINT}"
    return None


_HINTS = {
    "slack_bot_token": "copy the Bot User OAuth Token (xoxb-...) from your Slack app's OAuth & Permissions page",
    "slack_signing_secret": "copy the Signing Secret from your Slack app's Basic Information page",
    "slack_app_token": "create an app-level token (xapp-...) with connections:write for Socket Mode",
    "drill_channel": "set it to the channel ID (C0123...) where the daily drill is posted",
}
CHANNEL_ID_HINT = (
    "in Slack, open the channel, click its name at the top, and copy the Channel ID (C0123...) at the bottom "
    "of the About tab"
)


def _describe(error: Any) -> str:
    field = str(error["loc"][0]).upper() if error["loc"] else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{field}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment and `.env`; any problem becomes a one-line ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None


def inspect_settings(**overrides: Any) -> tuple[Settings, list[str]]:
    """Settings plus every invalid value, one line each; each invalid value is replaced by its default so
    the rest (the question bank, the programs) can still be checked in the same run."""
    try:
        return Settings(**overrides), []
    except ValidationError as exc:
        errors = exc.errors()
    problems = [_describe(error) for error in errors]
    fields = Settings.model_fields
    defaults = {
        str(e["loc"][0]): fields[str(e["loc"][0])].get_default(call_default_factory=True)
        for e in errors
        if e["loc"] and str(e["loc"][0]) in fields
    }
    try:
        return Settings(**{**overrides, **defaults}), problems
    except ValidationError:
        raise ConfigError(problems[0]) from None
