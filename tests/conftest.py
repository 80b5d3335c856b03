"""Shared fixtures: a fake Slack over HTTP, settings pointing at it, and the real bot in-process."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import http.client
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import pytest

from bot.runtime import Bot, build_runtime
from bot.settings import Settings
from tests.fakes.slack import FakeSlack

DATA = Path(__file__).parent / "data"
TEST_BANK = DATA / "bank.yaml"
BOT_TOKEN = "xoxb-test-0000-secret-bot-token"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
CHANNEL = "CDRILL001"
MANAGER = "UMANAGER1"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's shell settings or .env file."""
    for key in list(os.environ):
        if key.startswith(("SLACK_", "DRILL_")) or key in ("DATABASE_URL", "QUESTIONS_FILE", "PORT"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


POSTGRES_CANDIDATES = (
    "postgresql://root@127.0.0.1:5432/test",
    "postgresql://postgres@127.0.0.1:5432/test",
)


@functools.cache
def postgres_admin_url() -> tuple[str | None, str]:
    """A PostgreSQL server the tests may create scratch databases on, or why there is none."""
    explicit = os.environ.get("DRILLBOT_TEST_POSTGRES_URL")
    candidates = [explicit.replace("+psycopg", "")] if explicit else list(POSTGRES_CANDIDATES)
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[dev]')"
    reasons = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3, autocommit=True):
                return url, ""
        except psycopg.Error as exc:
            reasons.append(f"{url}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__}")
    return None, "PostgreSQL is not reachable (" + "; ".join(reasons) + "); set DRILLBOT_TEST_POSTGRES_URL to use another"


@contextlib.contextmanager
def scratch_postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards. Skips (saying why) without a server."""
    admin, reason = postgres_admin_url()
    if admin is None:
        pytest.skip(reason)
    import psycopg

    name = f"drillbot_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every end-to-end test runs on both backends: a SQLite file and a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'drills.db'}"
    else:
        with scratch_postgres_database() as url:
            yield url


@pytest.fixture
def make_settings(fake_slack: FakeSlack, tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": fake_slack.url,
            "drill_channel": CHANNEL,
            "drill_managers": MANAGER,
            "database_url": database_url,
            "questions_file": str(TEST_BANK),
            "drill_schedule": "0 10 * * 1-5",
            "drill_tick_seconds": 0.2,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return factory


class SlackSender:
    """Sends really signed requests to the bot's /slack/events, like Slack does."""

    def __init__(self, base_url: str, secret: str = SIGNING_SECRET) -> None:
        self.base_url = base_url
        self.secret = secret
        self._event_counter = 0

    def headers_for(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        base = f"v0:{ts}:".encode() + body
        signature = "v0=" + hmac.new((secret or self.secret).encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    def raw(
        self,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        sign: bool = True,
        path: str = "/slack/events",
        method: str = "POST",
        timeout: float = 10,
    ) -> tuple[int, bytes]:
        all_headers = {"Content-Type": content_type}
        if sign:
            all_headers.update(self.headers_for(body))
        all_headers.update(headers or {})
        url = urlparse(self.base_url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        try:
            try:
                conn.request(method, path, body=body if method == "POST" else None, headers=all_headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (e.g. 413) and closed before reading the whole body
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.raw(b"", method="GET", path=path, sign=False)

    def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> tuple[int, bytes]:
        self._event_counter += 1
        payload = {
            "token": "legacy",
            "team_id": "T0FAKE",
            "api_app_id": "A0FAKE",
            "type": "event_callback",
            "event_id": event_id or f"Ev{self._event_counter:08d}",
            "event_time": int(time.time()),
            "event": event,
        }
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self.raw(json.dumps(payload).encode(), headers=headers)

    def command(self, text: str, *, user_id: str = "UASKER01", response_url: str) -> tuple[int, bytes]:
        form = {
            "token": "legacy",
            "team_id": "T0FAKE",
            "channel_id": CHANNEL,
            "user_id": user_id,
            "user_name": "someone",
            "command": "/interview-question",
            "text": text,
            "api_app_id": "A0FAKE",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
        return self.raw(urlencode(form).encode(), content_type="application/x-www-form-urlencoded")


def reply_event(thread_ts: str, *, user: str, ts: float | str | None = None, text: str = "my answer", **extra: Any) -> dict[str, Any]:
    ts_text = f"{time.time():.6f}" if ts is None else (ts if isinstance(ts, str) else f"{ts:.6f}")
    event = {"type": "message", "channel": CHANNEL, "user": user, "text": text, "ts": ts_text,
             "thread_ts": thread_ts, "channel_type": "channel", "event_ts": ts_text}
    event.update(extra)
    return event


@pytest.fixture
def start_bot(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., tuple[Bot, SlackSender]]]:
    bots: list[Bot] = []

    def factory(*, settings: Settings | None = None, clock: Callable[..., Any] | None = None, **overrides: Any) -> tuple[Bot, SlackSender]:
        settings = settings or make_settings(**overrides)
        kwargs = {"clock": clock} if clock else {}
        bot = Bot(build_runtime(settings, verify_token=True, **kwargs), mode="http", host="127.0.0.1", port=0)
        bot.start()
        bots.append(bot)
        assert bot.server is not None
        return bot, SlackSender(f"http://127.0.0.1:{bot.server.port}")

    yield factory
    for bot in bots:
        bot.stop(deadline_seconds=5)
