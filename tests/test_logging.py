"""Structured logs: JSON lines (or readable text) with request / job fields, and secrets masked in both."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bot.logs import bind, configure_logging, make_handler
from tests.fakes.events import reply_event
from tests.fakes.workspace import BOT_TOKEN, CHANNEL, SIGNING_SECRET, assert_no_token

SECRETS = [BOT_TOKEN, SIGNING_SECRET]


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]  # every line is one JSON object


@pytest.fixture
def json_logs() -> Iterator[Captured]:
    """A JSON handler on the root logger (as configure_logging would install), restored afterwards."""
    root = logging.getLogger()
    stream = io.StringIO()
    handler = make_handler(stream, SECRETS, "json")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_lines_have_the_fields_and_mask_secrets_everywhere(json_logs):
    log = logging.getLogger("bot.test")
    log.info("token %s and secret %s", BOT_TOKEN, SIGNING_SECRET, extra={"drill_id": 7, "note": f"x {BOT_TOKEN}"})
    try:
        raise RuntimeError(f"Slack said no to {BOT_TOKEN}\nsecond line")
    except RuntimeError:
        log.exception("call failed")
    log.warning("an unknown xoxp-1234-5678-abcdef token is masked by its shape")
    with bind(slack_event_id="Ev0TEST", job=None):
        log.info("inside a request")

    assert_no_token(json_logs.stream.getvalue())
    assert SIGNING_SECRET not in json_logs.stream.getvalue()
    assert "xoxp-1234" not in json_logs.stream.getvalue()
    first, failed, shaped, bound = json_logs.records()
    assert set(first) >= {"ts", "level", "logger", "message"}
    assert first["level"] == "INFO" and first["logger"] == "bot.test"
    assert first["message"] == "token **** and secret ****"
    assert first["drill_id"] == 7
    assert first["note"] == "x ****"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert failed["level"] == "ERROR"
    assert "RuntimeError" in failed["exc"] and "second line" in failed["exc"]
    assert shaped["message"] == "an unknown xoxp-**** token is masked by its shape"
    assert bound["slack_event_id"] == "Ev0TEST" and "job" not in bound


def test_text_is_the_default_and_shows_extra_fields(tmp_path):
    stream = io.StringIO()
    handler = make_handler(stream, SECRETS)
    log = logging.getLogger("bot.test.text")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("POST /slack/events 200", extra={"status": 200, "type": "event", "path": "/slack/events"})
        log.info("with %s", BOT_TOKEN, extra={"text": "two words"})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    first, second = stream.getvalue().splitlines()
    assert " INFO bot.test.text: POST /slack/events 200 status=200 type=event path=/slack/events" in first
    assert first[:4].isdigit()  # starts with the time
    assert second.endswith('with **** text="two words"')


def test_configure_logging_rejects_an_unknown_format():
    with pytest.raises(ValueError, match="text, json"):
        configure_logging(logging.INFO, SECRETS, fmt="yaml")


def test_access_lines_are_info_only_for_failed_or_slow_requests(start_bot, fake_slack, json_logs):
    """By default a request that succeeds in time logs its access line at DEBUG (not written at INFO)."""
    _bot, slack = start_bot(drill_schedule="0 0 1 1 *")
    assert slack.event(reply_event("1.000001", user="UALICE"), event_id="Ev0QUIET01")[0] == 200
    assert slack.raw(b"{}", sign=False)[0] == 401
    assert slack.get("/nowhere")[0] == 404
    assert slack.get("/healthz")[0] == 200

    lines = [r for r in json_logs.records() if r["logger"] == "bot.web"]
    assert [(r["path"], r["status"], r["level"]) for r in lines] == [
        ("/slack/events", 401, "INFO"),
        ("/nowhere", 404, "INFO"),
    ]


def test_one_json_line_per_request_and_per_job_run_with_their_ids(start_bot, fake_slack, json_logs):
    # DRILL_SLOW_REQUEST_MS=0: every request counts as slow, so every access line is at INFO.
    bot, slack = start_bot(drill_schedule="* * * * *", drill_slow_request_ms=0)  # due now: posts at once
    fake_slack.wait_for(lambda: fake_slack.posts(thread=False), timeout=10)
    drill_ts = fake_slack.messages[CHANNEL][0]["ts"]
    assert slack.event(reply_event(drill_ts, user="UALICE"), event_id="Ev0LOGGED1")[0] == 200
    assert slack.command("help", response_url=fake_slack.response_url())[0] == 200
    assert slack.raw(b"{}", sign=False)[0] == 401
    assert slack.get("/healthz")[0] == 200

    def request_lines() -> list[dict[str, Any]]:
        return [r for r in json_logs.records() if r["logger"] == "bot.web"]

    records = json_logs.records()
    assert_no_token(json_logs.stream.getvalue())
    event_lines = [r for r in request_lines() if r.get("slack_event_id") == "Ev0LOGGED1"]
    assert len(event_lines) == 1, request_lines()
    line = event_lines[0]
    assert line["level"] == "INFO"
    assert line["method"] == "POST" and line["path"] == "/slack/events"
    assert line["status"] == 200 and line["type"] == "event"
    assert isinstance(line["duration_ms"], int | float) and 0 <= line["duration_ms"] < 3000
    assert line["message"] == "POST /slack/events 200"

    command = [r for r in request_lines() if r.get("type") == "command"]
    assert len(command) == 1 and command[0]["slack_event_id"] == "1.2.3"  # a command's trigger id
    assert [r["status"] for r in request_lines() if r.get("type") == "other" and r["path"] == "/slack/events"] == [401]
    assert [r["status"] for r in request_lines() if r["path"] == "/healthz"] == [200]

    # The job that posted: one INFO line for the run, and the drill loop's own line carries the job.
    runs = [r for r in records if r["logger"] == "bot.scheduler" and r.get("job") == "post"]
    assert runs and runs[0]["outcome"] == "ok" and isinstance(runs[0]["duration_ms"], int | float)
    posted = [r for r in records if r["logger"].startswith("bot.drills") and "posted question" in r["message"]]
    assert posted and posted[0]["job"] == "post"
    assert bot.runtime.service  # still running


def test_work_handed_to_listener_threads_keeps_the_request_fields(start_bot, json_logs):
    """Lazy listeners run on the bot's listener pool: their lines still say which Slack event they serve."""
    bot, _slack = start_bot(drill_schedule="off")
    with bind(slack_event_id="Ev0LAZY"):
        bot.executor.submit(lambda: logging.getLogger("bot.lazy").info("lazy work")).result(timeout=5)
    bot.executor.submit(lambda: logging.getLogger("bot.lazy").info("unrelated work")).result(timeout=5)
    lazy = {r["message"]: r for r in json_logs.records() if r["logger"] == "bot.lazy"}
    assert lazy["lazy work"]["slack_event_id"] == "Ev0LAZY"
    assert "slack_event_id" not in lazy["unrelated work"]


def test_job_errors_are_logged_once_with_the_job(make_settings, json_logs, eventually, wait_ticks):
    from bot.runtime import Bot, build_runtime

    runtime = build_runtime(make_settings(drill_schedule="off"))

    def broken() -> int:
        raise RuntimeError(f"cannot remind with {BOT_TOKEN}")

    runtime.service.send_reminders = broken  # type: ignore[method-assign]
    bot = Bot(runtime, host="127.0.0.1", port=0)
    bot.start()
    try:
        eventually(lambda: [r for r in json_logs.records() if r["level"] == "ERROR"], 5, what="the error line")
        wait_ticks(bot, runs=3)  # more failing runs: still one line (the repeat is quiet)
    finally:
        bot.stop(deadline_seconds=5)
    errors = [r for r in json_logs.records() if r["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0]["job"] == "reminders" and "RuntimeError" in errors[0]["exc"]
    assert_no_token(json_logs.stream.getvalue())


def test_drillbot_run_writes_json_lines_with_drill_log_format_json(launch_run, bot_env):
    bot = launch_run(env=bot_env(drill_log_format="json"))
    bot.wait_healthy()
    status, _ = bot.sender.get("/readyz")
    assert status == 200, "/readyz did not answer 200"
    code, _ = bot.sigterm()
    assert code == 0, bot.logs()[-3000:]
    text = bot.stderr()
    assert_no_token(text)
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records, "no log lines"
    assert any("serving HTTP" in r["message"] for r in records)
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
