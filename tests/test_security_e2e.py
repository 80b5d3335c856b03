"""The HTTP edge under hostile input: signatures, sizes, garbage, fuzzing, and secrets in logs.

Everything goes over real HTTP to the running bot; an unsigned or badly signed request must change
nothing, and no input may turn into a 5xx or stop the server from serving.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.drills import DrillService, PostResult
from storage.models import Answer
from tests.conftest import BOT_TOKEN, CHANNEL, SIGNING_SECRET, reply_event
from tests.fakes.slack import BOT_USER_ID, Failure

NEVER = "off"


def open_drill(start_bot: Any, fake_slack: Any, **overrides: Any) -> tuple[Any, Any, int, str]:
    overrides.setdefault("drill_schedule", NEVER)
    bot, slack = start_bot(**overrides)
    outcome = bot.runtime.service.post_today()
    assert outcome.result == PostResult.POSTED
    assert outcome.drill_id is not None and outcome.ts == fake_slack.messages[CHANNEL][0]["ts"]
    return bot, slack, outcome.drill_id, outcome.ts


def answer_count(bot: Any) -> int:
    with bot.runtime.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Answer)) or 0)


def envelope(event: dict[str, Any], event_id: str = "EvSEC0001") -> bytes:
    return json.dumps(
        {
            "token": "legacy",
            "team_id": "T0FAKE",
            "api_app_id": "A0FAKE",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
        }
    ).encode()


def assert_serving(slack: Any) -> None:
    status, body = slack.get("/healthz")
    assert status == 200, (status, body)
    assert json.loads(body)["database"] == "ok"


# -- signatures ------------------------------------------------------------------------------------


def test_missing_signature_is_rejected_and_changes_nothing(start_bot, fake_slack):
    bot, slack, _drill_id, drill_ts = open_drill(start_bot, fake_slack)
    body = envelope(reply_event(drill_ts, user="UMALLORY"))

    assert slack.raw(body, sign=False)[0] == 401
    only_timestamp = {"X-Slack-Request-Timestamp": str(int(time.time()))}
    assert slack.raw(body, sign=False, headers=only_timestamp)[0] == 401
    only_signature = {"X-Slack-Signature": slack.headers_for(body)["X-Slack-Signature"]}
    assert slack.raw(body, sign=False, headers=only_signature)[0] == 401

    assert answer_count(bot) == 0
    assert slack.raw(body)[0] == 200  # the same body, properly signed, is accepted
    assert answer_count(bot) == 1


def test_wrong_signature_is_rejected_and_changes_nothing(start_bot, fake_slack):
    bot, slack, _drill_id, drill_ts = open_drill(start_bot, fake_slack)
    body = envelope(reply_event(drill_ts, user="UMALLORY"))

    forged = slack.headers_for(body, secret="some-other-apps-signing-secret")
    assert slack.raw(body, sign=False, headers=forged)[0] == 401
    # A genuine signature of a different body does not cover this one.
    other = envelope(reply_event(drill_ts, user="UALICE"))
    assert slack.raw(body, sign=False, headers=slack.headers_for(other))[0] == 401
    assert slack.raw(body, sign=False, headers={**slack.headers_for(body), "X-Slack-Signature": "v0=00"})[0] == 401

    assert answer_count(bot) == 0


def test_stale_timestamp_is_rejected_and_changes_nothing(start_bot, fake_slack):
    bot, slack, _drill_id, drill_ts = open_drill(start_bot, fake_slack)
    body = envelope(reply_event(drill_ts, user="UMALLORY"))

    for age in (6 * 60, 3600, 86400):
        old = slack.headers_for(body, timestamp=int(time.time()) - age)  # correctly signed, but replayed late
        assert slack.raw(body, sign=False, headers=old)[0] == 401, age
    future = slack.headers_for(body, timestamp=int(time.time()) + 3600)
    assert slack.raw(body, sign=False, headers=future)[0] == 401

    assert answer_count(bot) == 0


def test_malformed_signature_headers_are_401(start_bot, fake_slack):
    bot, slack, _drill_id, drill_ts = open_drill(start_bot, fake_slack)
    body = envelope(reply_event(drill_ts, user="UMALLORY"))
    good = slack.headers_for(body)
    variants = [
        {**good, "X-Slack-Request-Timestamp": ""},
        {**good, "X-Slack-Request-Timestamp": "abc"},
        {**good, "X-Slack-Request-Timestamp": "1e3"},
        {**good, "X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"] + ".5"},
        {**good, "X-Slack-Signature": ""},
        {**good, "X-Slack-Signature": good["X-Slack-Signature"].removeprefix("v0=")},
        {**good, "X-Slack-Signature": "v1=" + good["X-Slack-Signature"].removeprefix("v0=")},
    ]

    statuses = [slack.raw(body, sign=False, headers=headers)[0] for headers in variants]

    assert statuses == [401] * len(variants)
    assert answer_count(bot) == 0
    assert_serving(slack)


# -- size and garbage ------------------------------------------------------------------------------


def test_body_over_one_megabyte_is_413(start_bot, fake_slack):
    bot, slack, _drill_id, drill_ts = open_drill(start_bot, fake_slack)
    event = reply_event(drill_ts, user="UALICE", text="y" * (1024 * 1024 + 10))
    body = envelope(event)
    assert len(body) > 1024 * 1024

    status, _ = slack.raw(body)

    assert status == 413
    assert answer_count(bot) == 0
    assert_serving(slack)


def _statuses_outside(slack: Any, cases: list[tuple[str, bytes]], low: int, high: int) -> list[tuple[Any, ...]]:
    """Send each (content type, body) signed; return those whose status is not in [low, high)."""
    wrong = []
    for content_type, body in cases:
        status, reply = slack.raw(body, content_type=content_type)
        if not low <= status < high:
            wrong.append((content_type, body[:200], status, reply[:200]))
    return wrong


def test_signed_unparseable_body_is_4xx(start_bot, fake_slack):
    bot, slack, _drill_id, _drill_ts = open_drill(start_bot, fake_slack)
    cases = [
        ("application/json", b"this is not json"),
        ("application/json", b'{"type": "event_callback", '),
        ("application/json", b"[1, 2, 3]"),
        ("application/json", b'"just a string"'),
        ("application/json", b"{}"),
        ("application/x-www-form-urlencoded", b"payload=%7Bnot-json"),
        ("application/x-www-form-urlencoded", b"payload=%5B%5D"),
        ("application/x-www-form-urlencoded", b"payload="),
    ]

    wrong = _statuses_outside(slack, cases, 400, 500)

    assert not wrong, "\n".join(map(repr, wrong))
    assert answer_count(bot) == 0
    assert_serving(slack)


def test_signed_non_utf8_body_is_4xx(start_bot, fake_slack):
    bot, slack, _drill_id, _drill_ts = open_drill(start_bot, fake_slack)
    cases = [
        ("application/json", b"\xff\xfe\xfa not utf-8"),
        ("application/json", b'{"type": "event_callback", "x": "\x80"}'),
        ("application/x-www-form-urlencoded", b"payload=\xc3\x28"),
    ]

    wrong = _statuses_outside(slack, cases, 400, 500)

    assert not wrong, "\n".join(map(repr, wrong))
    assert answer_count(bot) == 0
    assert_serving(slack)


def test_signed_wrong_content_type_is_4xx(start_bot, fake_slack):
    """Slack sends application/json (events) or a form (commands, interactivity), nothing else."""
    bot, slack, _drill_id, _drill_ts = open_drill(start_bot, fake_slack)
    cases = [
        ("text/plain", b"hello there"),
        ("application/octet-stream", b"\x00\x01\x02\x03"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--xyz--"),
        ("application/xml", b"<event type='message'/>"),
    ]

    wrong = _statuses_outside(slack, cases, 400, 500)

    assert not wrong, "\n".join(map(repr, wrong))
    assert answer_count(bot) == 0
    assert_serving(slack)


def test_signed_malformed_event_shapes_never_5xx(start_bot, fake_slack):
    """Valid JSON, correctly signed, but fields of the wrong type: acknowledged or refused, never a 5xx."""
    bot, slack, _drill_id, drill_ts = open_drill(start_bot, fake_slack)
    reply = reply_event(drill_ts, user="UALICE")
    events: list[Any] = [
        None,
        "a string",
        [reply],
        {"type": ["message"]},
        {"type": None},
        {**reply, "subtype": ["thread_broadcast"]},
        {**reply, "subtype": {"a": 1}},
        {**reply, "user": ["UALICE"]},
        {**reply, "ts": 1700000000.5, "thread_ts": float(drill_ts)},
        {**reply, "channel": 42},
        {"type": "message", "channel": CHANNEL, "subtype": "message_deleted", "previous_message": "x"},
        {"type": "message", "channel": CHANNEL, "subtype": "message_deleted", "deleted_ts": 5, "previous_message": [1]},
        {"type": "message", "channel": CHANNEL, "subtype": "message_changed", "message": "x"},
        {
            "type": "message",
            "channel": CHANNEL,
            "subtype": "message_changed",
            "message": {**reply, "subtype": ["x"]},
            "event_ts": "now",
        },
    ]
    cases = [("application/json", envelope(event, event_id=f"EvSHAPE{i:04d}")) for i, event in enumerate(events)]
    cases += [
        ("application/json", b'{"type": "block_actions", "actions": null}'),
        ("application/json", b'{"type": "event_callback", "authorizations": true, "event": {"type": "message"}}'),
        ("application/json", b'{"type": "url_verification", "challenge": {"a": 1}}'),
        ("application/json", b'{"type": []}'),  # regression: an envelope type that is not a string was a 500
        ("application/json", b'{"type": {}}'),
        ("application/json", b'{"type": 7, "event": {"type": "message"}}'),
        (
            "application/x-www-form-urlencoded",
            b"payload=" + json.dumps({"type": "block_actions", "actions": 5}).encode(),
        ),
    ]

    wrong = _statuses_outside(slack, cases, 200, 500)

    assert not wrong, "\n".join(map(repr, wrong))
    assert answer_count(bot) == 0
    assert_serving(slack)


def test_signed_envelope_whose_type_is_not_a_string_is_never_5xx(start_bot, fake_slack):
    """A top-level `type` that is a list or an object (unhashable) is refused or acknowledged, not a 500."""
    bot, slack, _drill_id, _drill_ts = open_drill(start_bot, fake_slack)
    cases = [
        ("application/json", b'{"type": []}'),
        ("application/json", b'{"type": {"a": 1}, "event_id": "EvTYPE0001"}'),
        ("application/json", b'{"type": ["event_callback"], "event": {"type": "message"}}'),
        ("application/x-www-form-urlencoded", b"payload=" + json.dumps({"type": []}).encode()),
        ("application/x-www-form-urlencoded", b"payload=" + json.dumps({"type": {"x": 1}, "actions": []}).encode()),
    ]

    wrong = _statuses_outside(slack, cases, 200, 500)

    assert not wrong, "\n".join(map(repr, wrong))
    assert answer_count(bot) == 0
    assert_serving(slack)


def test_healthz_reports_database_and_scheduler(start_bot):
    _bot, slack = start_bot(drill_schedule=NEVER)

    status, body = slack.get("/healthz")

    assert status == 200
    health = json.loads(body)
    assert health["database"] == "ok"
    assert health["scheduler"] == "running"


# -- fuzzing ---------------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
TS_LIKE = st.one_of(
    st.floats(min_value=0, max_value=4e9).map(lambda f: f"{f:.6f}"),
    st.sampled_from(["", "nan", "inf", "-1", "1e300", "abc", "0.000000"]),
    JSON_SCALARS,
)


def fuzz_event(drill_ts: str) -> st.SearchStrategy[dict[str, Any]]:
    maybe_ts = st.one_of(st.just(drill_ts), TS_LIKE)
    message = st.fixed_dictionaries(
        {},
        optional={
            "type": st.just("message"),
            "user": st.one_of(st.just("UFUZZ01"), st.just(BOT_USER_ID), JSON_SCALARS),
            "text": JSON_VALUES,
            "ts": maybe_ts,
            "thread_ts": maybe_ts,
            "bot_id": JSON_SCALARS,
            "subtype": st.sampled_from([None, "bot_message", "thread_broadcast", "file_share"]) | JSON_SCALARS,
        },
    )
    return st.fixed_dictionaries(
        {
            "type": st.sampled_from(["message", "app_mention", "reaction_added", "member_joined_channel"])
            | st.text(max_size=20),
        },
        optional={
            "channel": st.one_of(st.just(CHANNEL), JSON_SCALARS),
            "user": st.one_of(st.just("UFUZZ01"), st.just(BOT_USER_ID), JSON_SCALARS),
            "text": JSON_VALUES,
            "ts": maybe_ts,
            "thread_ts": maybe_ts,
            "event_ts": maybe_ts,
            "bot_id": JSON_SCALARS,
            "subtype": st.sampled_from(["message_changed", "message_deleted", "bot_message", "channel_join"])
            | JSON_SCALARS,
            "message": message | JSON_VALUES,
            "previous_message": message | JSON_VALUES,
            "deleted_ts": maybe_ts,
        },
    )


def fuzz_envelope(drill_ts: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.sampled_from(["event_callback", "url_verification", "block_actions"]) | st.text(max_size=20)},
        optional={
            "token": JSON_SCALARS,
            "team_id": st.just("T0FAKE") | JSON_SCALARS,
            "api_app_id": JSON_SCALARS,
            "event_id": st.text(max_size=20) | JSON_SCALARS,
            "event_time": JSON_SCALARS,
            "event": fuzz_event(drill_ts) | JSON_VALUES,
            "challenge": JSON_SCALARS,
            "authorizations": JSON_VALUES,
            "user": JSON_VALUES,
            "actions": JSON_VALUES,
        },
    )


def test_fuzzed_signed_requests_never_5xx(start_bot, fake_slack):
    _bot, slack, _drill_id, drill_ts = open_drill(start_bot, fake_slack)
    content_types = st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8"]
    )
    bodies = st.one_of(
        st.binary(max_size=512).map(lambda b: ("bytes", b)),
        fuzz_envelope(drill_ts).map(lambda d: ("json", json.dumps(d).encode())),
        fuzz_envelope(drill_ts).map(lambda d: ("form", b"payload=" + json.dumps(d).encode())),
        JSON_VALUES.map(lambda v: ("value", json.dumps(v).encode())),
    )

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=bodies, content_type=content_types)
    def check(case: tuple[str, bytes], content_type: str) -> None:
        _kind, body = case
        status, reply = slack.raw(body, content_type=content_type)
        assert status < 500, (status, body, reply)

    check()
    assert_serving(slack)


# -- secrets never logged --------------------------------------------------------------------------


def test_secrets_never_appear_in_logs(start_bot, fake_slack, caplog):
    caplog.set_level(logging.DEBUG)
    bot, slack, _drill_id, drill_ts = open_drill(start_bot, fake_slack)

    services: list[DrillService] = []

    def service_for(channel: str) -> DrillService:
        runtime = bot.runtime
        settings = runtime.settings.model_copy(update={"drill_channel": channel})
        service = DrillService(settings=settings, bank=runtime.bank, db=runtime.db, slack=runtime.service.slack)
        services.append(service)
        return service

    # Normal traffic and failures: a bad signature, garbage, a malformed event, Slack answering 500
    # (uncertain) and Slack refusing the token.
    try:
        assert slack.event(reply_event(drill_ts, user="UALICE"))[0] == 200
        body = envelope(reply_event(drill_ts, user="UMALLORY"))
        assert slack.raw(body, sign=False, headers=slack.headers_for(body, secret="wrong"))[0] == 401
        assert slack.raw(b"not json")[0] == 400
        slack.event({"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "previous_message": "x"})
        fake_slack.fail_next("chat.postMessage", Failure(status=500))
        assert service_for("COUTAGE001").post_today().result == PostResult.RETRYING
        fake_slack.invalid_tokens.add(BOT_TOKEN)
        assert service_for("CREFUSED01").post_today().result == PostResult.FAILED
    finally:
        for service in services:
            close = getattr(service, "close", None)
            if close is not None:
                close()

    records = caplog.records
    assert any(r.levelno >= logging.WARNING for r in records), "the run must include a logged failure"
    assert any("Sending a request" in r.getMessage() for r in records), "slack_sdk DEBUG logging was captured"
    everything = caplog.text + "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "") for r in records
    )
    assert BOT_TOKEN not in everything
    assert SIGNING_SECRET not in everything
