"""GET /metrics (on METRICS_PORT) and GET /readyz on the real bot (uvicorn + Bolt + scheduler) against the fake Slack.

Every bot here has a metrics listener on a port of its own (`metrics_port=0`: a free one); the Slack port
answers /metrics with 404.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.runtime import Bot, build_runtime
from tests.conftest import BOT_TOKEN, CHANNEL, SIGNING_SECRET, SlackSender, reply_event
from tests.fakes.slack import BOT_USER_ID, Failure

NEVER = "off"


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


@pytest.fixture
def start_bot(start_bot: Any) -> Any:
    """conftest's start_bot with a metrics listener on a free port."""

    def factory(**overrides: Any) -> tuple[Bot, SlackSender]:
        overrides.setdefault("metrics_port", 0)
        return start_bot(**overrides)  # type: ignore[no-any-return]

    return factory


def metrics_sender(bot: Bot) -> SlackSender:
    assert bot.server is not None and "metrics" in bot.server.ports, "no metrics listener"
    return SlackSender(f"http://127.0.0.1:{bot.server.ports['metrics']}")


def scrape(bot: Bot) -> list[tuple[str, dict[str, str], float]]:
    status, body = metrics_sender(bot).get("/metrics")
    assert status == 200, body
    return parse(body.decode())


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there is none)."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items()))


def has(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> bool:
    return any(n == name and all(ls.get(k) == want for k, want in labels.items()) for n, ls, _ in samples)


# -- the HTTP edge ----------------------------------------------------------------------------------


def test_metrics_are_404_on_the_slack_port_and_200_on_metrics_port(start_bot, fake_slack):
    bot, slack = start_bot(drill_schedule=NEVER)
    assert bot.server is not None

    for method in ("GET", "HEAD", "POST"):
        assert slack.raw(b"", method=method, path="/metrics", sign=False)[0] == 404, method
    assert slack.get("/metrics?name[]=drillbot_requests_total")[0] == 404
    status, body = metrics_sender(bot).get("/metrics")
    assert status == 200
    assert b"# TYPE drillbot_requests_total counter" in body and b"drillbot_database_up 1.0" in body
    # The probes stay on the Slack port; the metrics listener binds METRICS_HOST, loopback by default.
    assert slack.get("/healthz")[0] == 200 and slack.get("/readyz")[0] == 200
    assert bot.server.addresses["metrics"][0] == "127.0.0.1"
    assert bot.server.ports["metrics"] != bot.server.port


def test_without_metrics_port_there_is_no_metrics_listener(start_bot):
    bot, slack = start_bot(drill_schedule=NEVER, metrics_port=None)
    assert bot.server is not None
    assert set(bot.server.ports) == {"slack"}
    assert slack.get("/metrics")[0] == 404
    assert bot.runtime.metrics is not None  # still measured, only not served


def test_metrics_count_requests_by_type_and_status_and_time_the_acks(start_bot, fake_slack):
    bot, slack = start_bot(drill_schedule=NEVER)
    before = scrape(bot)
    assert value(before, "drillbot_requests_total") == 0
    assert value(before, "drillbot_database_up") == 1

    assert slack.event(reply_event("1.000001", user="UALICE"))[0] == 200  # not a drill thread: ignored, acked
    assert slack.command("help", response_url=fake_slack.response_url())[0] == 200
    assert slack.raw(b'{"type": "event_callback"}', sign=False)[0] == 401
    form = "payload=" + json.dumps({"type": "view_closed", "user": {"id": "U1"}, "view": {"id": "V1"}})
    assert slack.raw(form.encode(), content_type="application/x-www-form-urlencoded")[0] == 200

    samples = scrape(bot)
    assert value(samples, "drillbot_requests_total", type="event", status="200") == 1
    assert value(samples, "drillbot_requests_total", type="command", status="200") == 1
    assert value(samples, "drillbot_requests_total", type="view", status="200") == 1
    assert value(samples, "drillbot_requests_total", type="other", status="401") == 1
    assert value(samples, "drillbot_requests_total") == 4  # probes (/metrics, /healthz) are not counted
    for kind in ("event", "command", "view", "other"):
        count = value(samples, "drillbot_ack_latency_seconds_count", type=kind)
        assert count == 1, kind
        # Every ack took well under Slack's 3 s: all of it is in the 3 s bucket, and the sum is small.
        assert value(samples, "drillbot_ack_latency_seconds_bucket", type=kind, le="3.0") == 1
        assert 0 < value(samples, "drillbot_ack_latency_seconds_sum", type=kind) < 3
    assert has(samples, "drillbot_ack_latency_seconds_bucket", type="event", le="0.001")  # fine-grained from 1 ms
    assert value(samples, "process_resident_memory_bytes") > 0


def test_metrics_content_type_is_prometheus_text(start_bot):
    bot, _slack = start_bot(drill_schedule=NEVER)
    import http.client

    assert bot.server is not None
    conn = http.client.HTTPConnection("127.0.0.1", bot.server.ports["metrics"], timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
    finally:
        conn.close()
    assert "# TYPE drillbot_requests_total counter" in body
    assert "# TYPE drillbot_ack_latency_seconds histogram" in body
    assert BOT_TOKEN not in body and SIGNING_SECRET not in body


def test_each_bot_has_its_own_registry(start_bot):
    first, one = start_bot(drill_schedule=NEVER)
    second, _two = start_bot(drill_schedule=NEVER)
    assert one.event(reply_event("1.000001", user="UALICE"))[0] == 200
    assert value(scrape(first), "drillbot_requests_total", type="event") == 1
    assert value(scrape(second), "drillbot_requests_total", type="event") == 0


def test_without_metrics_there_is_no_metrics_route_and_the_bot_still_works(make_settings, fake_slack):
    bot = Bot(build_runtime(make_settings(drill_schedule=NEVER), metrics=False), host="127.0.0.1", port=0)
    bot.start()
    try:
        assert bot.server is not None
        slack = SlackSender(f"http://127.0.0.1:{bot.server.port}")
        assert slack.get("/metrics")[0] == 404
        assert slack.event(reply_event("1.000001", user="UALICE"))[0] == 200
        assert slack.get("/readyz")[0] == 200
        assert bot.runtime.service.post_today().result == "posted"
    finally:
        bot.stop(deadline_seconds=5)


# -- Slack API calls and retries --------------------------------------------------------------------


def test_slack_calls_are_counted_by_method_and_outcome_and_429s_as_retries(start_bot, fake_slack):
    bot, slack = start_bot(drill_schedule=NEVER)
    fake_slack.fail_next("chat.postMessage", Failure(status=429, headers={"Retry-After": "1"}))
    assert bot.runtime.service.post_today().result == "posted"
    samples = scrape(bot)
    assert value(samples, "drillbot_slack_api_calls_total", method="auth.test", outcome="ok") == 1  # startup check
    assert value(samples, "drillbot_slack_api_calls_total", method="chat.postMessage", outcome="ok") == 1
    assert value(samples, "drillbot_slack_api_retries_total", method="chat.postMessage", reason="rate_limited") == 1
    assert value(samples, "drillbot_slack_api_calls_total", outcome="http:429") == 0  # waited out, then ok
    assert len(fake_slack.calls_to("chat.postMessage")) == 2


def test_slack_errors_are_counted_by_code_and_http_status(start_bot, fake_slack):
    bot, slack = start_bot(drill_schedule=NEVER)
    fake_slack.fail_next("chat.postMessage", Failure(status=500))  # uncertain: released, retried later
    assert bot.runtime.service.post_today().result == "retrying"
    samples = scrape(bot)
    assert value(samples, "drillbot_slack_api_calls_total", method="chat.postMessage", outcome="http:500") == 1

    fake_slack.fail_next("auth.test", Failure(status=200, body={"ok": False, "error": "ratelimited_weird"}))
    with pytest.raises(Exception, match="auth.test"):
        bot.runtime.service.slack.verify_auth()
    samples = scrape(bot)
    assert value(samples, "drillbot_slack_api_calls_total", method="auth.test", outcome="error:ratelimited_weird") == 1
    assert value(samples, "drillbot_slack_api_retries_total") == 0


def test_rate_limited_listener_calls_count_as_retries_too(start_bot, fake_slack):
    """Bolt's per-request clients share the retry handlers: their 429s are counted (and never crash a copy)."""
    bot, slack = start_bot(drill_schedule=NEVER)
    fake_slack.fail_next("views.publish", Failure(status=429, headers={"Retry-After": "1"}))
    event = {"type": "app_home_opened", "user": "UALICE", "channel": "D0HOME", "tab": "home", "event_ts": "1.0"}
    assert slack.event(event)[0] == 200
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("views.publish") if c.status == 200], timeout=10)
    samples = scrape(bot)
    assert value(samples, "drillbot_slack_api_retries_total", method="views.publish", reason="rate_limited") == 1


# -- scheduler --------------------------------------------------------------------------------------


def test_scheduler_runs_and_lag_are_measured(start_bot, eventually):
    bot, _slack = start_bot(drill_schedule=NEVER, drill_tick_seconds=0.2)

    def ran_twice() -> list[tuple[str, dict[str, str], float]] | None:
        samples = scrape(bot)
        done = all(value(samples, "drillbot_scheduler_runs_total", task=j, outcome="ok") >= 2 for j in ("post", "reveal"))
        return samples if done else None

    samples = eventually(ran_twice, timeout=10)
    for job in ("post", "reveal", "live_counts", "reminders"):
        assert value(samples, "drillbot_scheduler_duration_seconds_count", task=job) >= 1, job
    assert value(samples, "drillbot_scheduler_lag_seconds_count", task="post") >= 1
    assert has(samples, "drillbot_scheduler_last_lag_seconds", task="post")
    lag = value(samples, "drillbot_scheduler_last_lag_seconds", task="post")
    assert 0 <= lag < 5  # an idle scheduler starts each run on time, give or take the pool
    last_ok = value(samples, "drillbot_scheduler_last_success_timestamp_seconds", task="post")
    assert abs(time.time() - last_ok) < 10
    assert value(samples, "drillbot_scheduler_runs_total", outcome="error") == 0


def test_a_failing_job_is_counted_as_an_error(make_settings, eventually):
    runtime = build_runtime(make_settings(drill_schedule=NEVER, drill_tick_seconds=0.2, metrics_port=0), verify_token=True)

    def broken() -> int:
        raise RuntimeError("reminders are broken")

    runtime.service.send_reminders = broken  # type: ignore[method-assign]
    bot = Bot(runtime, host="127.0.0.1", port=0)
    bot.start()
    try:
        samples = eventually(
            lambda: (s := scrape(bot)) and value(s, "drillbot_scheduler_runs_total", task="reminders", outcome="error") >= 2
            and s,
            timeout=10,
        )
        assert value(samples, "drillbot_scheduler_runs_total", task="reminders", outcome="ok") == 0
        assert not has(samples, "drillbot_scheduler_last_success_timestamp_seconds", task="reminders")
        assert value(samples, "drillbot_scheduler_runs_total", task="post", outcome="ok") >= 1
    finally:
        bot.stop(deadline_seconds=5)


# -- gauges from the database -----------------------------------------------------------------------


def test_database_gauges_follow_posts_and_reveals(make_settings, fake_slack, make_clock):
    clock = make_clock(datetime.now(UTC).replace(microsecond=0))
    runtime = build_runtime(make_settings(drill_schedule=NEVER, drill_answer_window="1h"), clock=clock)
    try:
        assert runtime.metrics is not None
        samples = parse(runtime.metrics.render().decode())
        assert value(samples, "drillbot_database_up") == 1
        assert not has(samples, "drillbot_last_drill_posted_timestamp_seconds")
        assert value(samples, "drillbot_drills", status="open") == 0

        assert runtime.service.post_today().result == "posted"
        samples = parse(runtime.metrics.render().decode())
        assert value(samples, "drillbot_last_drill_posted_timestamp_seconds", channel=CHANNEL) == clock.moment.timestamp()
        assert value(samples, "drillbot_drills", status="open") == 1
        assert value(samples, "drillbot_reveal_overdue_seconds", channel=CHANNEL) == 0  # deadline not reached

        clock.advance(hours=1, minutes=5)  # 5 minutes past the deadline, not revealed yet
        samples = parse(runtime.metrics.render().decode())
        assert value(samples, "drillbot_reveal_overdue_seconds", channel=CHANNEL) == 300

        assert runtime.service.reveal_due()
        samples = parse(runtime.metrics.render().decode())
        assert not has(samples, "drillbot_reveal_overdue_seconds", channel=CHANNEL)
        assert value(samples, "drillbot_drills", status="closed") == 1
        assert value(samples, "drillbot_drills", status="open") == 0
    finally:
        runtime.db.dispose()


def test_a_database_outage_does_not_break_a_scrape(make_settings):
    runtime = build_runtime(make_settings(drill_schedule=NEVER))
    assert runtime.metrics is not None

    def broken() -> Any:
        raise ConnectionError("database is down")

    runtime.db.transaction = broken  # type: ignore[method-assign]
    runtime.db.read = broken  # type: ignore[method-assign]
    samples = parse(runtime.metrics.render().decode())
    assert value(samples, "drillbot_database_up") == 0
    assert not has(samples, "drillbot_drills")
    runtime.db.dispose()


# -- the drill loop's own counters (wired in bot/drills.py) -----------------------------------------


def test_drill_reveal_and_answer_counters_move(start_bot, fake_slack, eventually):
    bot, slack = start_bot(drill_schedule=NEVER, drill_answer_window="2s")
    assert bot.runtime.service.metrics is bot.runtime.metrics is not None
    assert bot.runtime.service.post_today().result == "posted"
    drill_ts = fake_slack.messages[CHANNEL][0]["ts"]
    assert slack.event(reply_event(drill_ts, user="UALICE"))[0] == 200
    fake_slack.wait_for(lambda: fake_slack.posts(thread=True), timeout=10)
    samples = eventually(
        lambda: (s := scrape(bot)) and value(s, "drillbot_reveals_posted_total", channel=CHANNEL) == 1 and s
    )
    assert value(samples, "drillbot_drills_posted_total", channel=CHANNEL) == 1
    assert value(samples, "drillbot_answers_recorded_total", channel=CHANNEL) == 1
    assert BOT_USER_ID  # the reply came from a person, not the bot


# -- readiness --------------------------------------------------------------------------------------


def test_readyz_is_ready_while_the_scheduler_runs_and_503_once_it_stops(start_bot):
    bot, slack = start_bot(drill_schedule=NEVER)
    status, body = slack.get("/readyz")
    assert status == 200
    assert json.loads(body) == {"ready": True, "scheduler": "running", "database": "ok"}

    assert bot.scheduler is not None
    bot.scheduler.shutdown()
    status, body = slack.get("/readyz")
    assert status == 503
    data = json.loads(body)
    assert data["ready"] is False and data["scheduler"] == "stopped" and data["database"] == "ok"
    assert "scheduler" in data["reason"]

    # /healthz is about the process and its database: unchanged, still 200.
    status, body = slack.get("/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "database": "ok", "scheduler": "stopped"}


def test_readyz_is_503_when_the_database_does_not_answer(start_bot, monkeypatch):
    bot, slack = start_bot(drill_schedule=NEVER)
    monkeypatch.setattr(bot.runtime.db, "ping", lambda: False)
    status, body = slack.get("/readyz")
    assert status == 503
    data = json.loads(body)
    assert data == {"ready": False, "scheduler": "running", "database": "unreachable", "reason": data["reason"]}
    assert "database" in data["reason"]
    assert slack.get("/healthz")[0] == 503
