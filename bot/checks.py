"""What `drillbot check` verifies, and how bad each finding is.

One run reports every problem, one line each, never only the first:
- **errors** (exit 1) stop drillbot from working: an invalid setting, a value left at its `.env.example`
  placeholder, a secret the chosen mode needs (the signing secret in HTTP mode), a channel *name* where an
  ID is needed, a structural problem in the question bank (invalid YAML, a missing field, a bad type, an
  unknown difficulty, a duplicate id) or in drills.yaml (bad crontab, zone or window, ...);
- **warnings** (printed, exit 0) are the bank's editorial rules (guidance length, key point count, tags
  outside the vocabulary, ...): a team's own bank may break them. `strict=True` makes them errors.

The question bank is checked even when the Slack settings are missing. With `slack=True` the check also
asks Slack: does the token work (which workspace, which bot user), is the bot in each drill channel (one
`conversations.history` call with limit=1, which answers `not_in_channel` otherwise), and in Socket Mode
does the app-level token open a connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.programs import Program, inspect_programs, single_program
from bot.domain.questions import QuestionBank, inspect_bank, lint, orphaned_ids
from bot.errors import DrillbotError
from bot.settings import CHANNEL_ID_HINT, Settings, channel_problem, inspect_settings
from bot.slack_api import HTTP_TIMEOUT_SECONDS, SlackGateway, connection_problem, make_client

__all__ = ["CheckReport", "Finding", "run_checks"]

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str


@dataclass
class CheckReport:
    settings: Settings
    mode: str
    findings: list[Finding] = field(default_factory=list)
    bank: QuestionBank | None = None
    programs: list[Program] = field(default_factory=list)
    # What a live Slack check confirmed, one line each (printed after the summary).
    confirmed: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def add(self, level: Level, messages: list[str] | str) -> None:
        for message in [messages] if isinstance(messages, str) else messages:
            self.findings.append(Finding(level, message))

    def summary(self, now: datetime | None = None) -> str:
        """The one-line OK summary: the bank's size per category and difficulty, and where drills go."""
        assert self.bank is not None
        bank = self.bank
        categories = ", ".join(f"{c} {n}" for c, n in sorted(bank.categories.items()))
        difficulties = ", ".join(f"{d} {bank.difficulties.get(d, 0)}" for d in ("easy", "medium", "hard"))
        settings = self.settings
        if settings.drill_programs_file:
            listed = ", ".join(f"{p.name} in {p.channel}" for p in self.programs)
            where = f"{len(self.programs)} programs ({listed})"
        else:
            upcoming = settings.schedule.next_drill(now or datetime.now(UTC))
            if settings.schedule.off:
                where = f"schedule 'off' {settings.drill_timezone}: drills only by `drillbot post`"
            else:
                when = upcoming.strftime("%a %Y-%m-%d %H:%M %Z") if upcoming else "none (every slot is a skip date)"
                where = f"schedule '{settings.drill_schedule}' {settings.drill_timezone}, next drill {when}"
            if not self.programs:
                where += " (no DRILL_CHANNEL: nothing is scheduled)"
        return f"OK: {len(bank.questions)} questions ({categories}; {difficulties}); {where}"


def _past_drill_problems(settings: Settings, bank: QuestionBank) -> list[str]:
    """Ids past drills asked that the bank lost without a `replaces:` (rotation would ask them as new).

    Reads an existing database only (a missing SQLite file is not created), and never fails the check.
    """
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from storage.db import Database
    from storage.models import Drill

    try:
        url = make_url(settings.database_url)
        if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
            return []
        db = Database(settings.database_url)
        try:
            with db.read() as session:
                used = list(session.scalars(select(Drill.question_id).distinct()))
        finally:
            db.dispose()
    except Exception:  # no database yet, or no drills table: nothing was asked
        return []
    return [
        f"question {qid!r} was asked by past drills but is no longer in the bank and no question replaces it "
        f"(add `replaces: [{qid}]` to the question that took its place)"
        for qid in orphaned_ids(bank, used)
    ]


def _check_grader(report: CheckReport, *, call: bool) -> None:
    """The grader settings hang together; with `call`, one test request to the endpoint."""
    settings = report.settings
    if not settings.drill_grader_url:
        if settings.drill_grader_model or settings.drill_grader_api_key:
            report.add("warning", ["DRILL_GRADER_MODEL or DRILL_GRADER_API_KEY without DRILL_GRADER_URL: no grading"])
        if call:
            report.add("error", ["--grader: DRILL_GRADER_URL is not set"])
        return
    if not settings.drill_grader_model:
        report.add("error", ["DRILL_GRADER_MODEL is required with DRILL_GRADER_URL (the model the endpoint serves)"])
        return
    try:
        from bot.grader import build_grader

        grader = build_grader(settings)
        if call and grader is not None:
            report.confirmed.append(grader.check())  # type: ignore[attr-defined]  # OpenAIGrader's
    except DrillbotError as exc:
        report.add("error", [str(exc)])


def run_checks(
    *, mode: str | None = None, strict: bool = False, slack: bool = False, grader: bool = False
) -> CheckReport:
    """Check the settings (environment and .env), the bank and the programs; optionally Slack itself."""
    settings, setting_problems = inspect_settings()
    report = CheckReport(settings=settings, mode=mode or settings.mode)
    report.add("error", setting_problems)
    _check_slack_settings(report, explicit_mode=mode is not None)
    bank, bank_problems = inspect_bank(settings.questions_file)
    report.bank = bank
    report.add("error", bank_problems)
    if bank is not None:
        report.add("warning", lint(bank))
        report.add("warning", _past_drill_problems(settings, bank))
    _check_programs(report, bank)
    _check_grader(report, call=grader)
    if slack:
        _check_slack(report)
    if strict:
        report.findings = [Finding("error", f.message) for f in report.findings]
    return report


def _check_slack_settings(report: CheckReport, *, explicit_mode: bool) -> None:
    settings = report.settings
    token_problem = settings.missing("slack_bot_token")
    if token_problem:
        report.add("error", token_problem)
    else:
        assert settings.slack_bot_token is not None
        token = settings.slack_bot_token.get_secret_value()
        if not token.startswith("xoxb-"):
            kind = "the app-level token (SLACK_APP_TOKEN)" if token.startswith("xapp-") else "not a bot token"
            report.add(
                "error",
                f"SLACK_BOT_TOKEN does not start with xoxb- ({kind}); copy the Bot User OAuth Token from your "
                "Slack app's OAuth & Permissions page",
            )
    why = "" if explicit_mode else ", as SLACK_APP_TOKEN is not set"
    if report.mode == "http":
        problem = settings.missing("slack_signing_secret")
        if problem:
            report.add(
                "error",
                f"{problem} (HTTP mode{why}, verifies Slack's requests with it; Socket Mode needs SLACK_APP_TOKEN "
                "instead)",
            )
    else:
        problem = settings.missing("slack_app_token")
        if problem:
            report.add("error", problem)
        elif settings.slack_app_token is not None and not settings.slack_app_token.get_secret_value().startswith(
            "xapp-"
        ):
            report.add(
                "error",
                "SLACK_APP_TOKEN does not start with xapp-; create an app-level token with connections:write "
                "(Basic Information -> App-Level Tokens)",
            )


def _check_programs(report: CheckReport, bank: QuestionBank | None) -> None:
    settings = report.settings
    if settings.drill_programs_file:
        if bank is None:
            return  # its categories are checked against the bank, which did not load (reported above)
        programs, problems = inspect_programs(
            settings.drill_programs_file,
            bank=bank,
            **settings.program_defaults,
        )
        report.add("error", problems)
        for program in programs:
            problem = channel_problem(program.channel)
            if problem:
                report.add("error", f"{settings.drill_programs_file}: program {program.name!r}: channel {problem}")
        report.programs = programs
        return
    channel = settings.drill_channel
    if channel is None:
        report.add("warning", "DRILL_CHANNEL is not set: no scheduled drills, only /interview-question; "
                   "set it to the channel ID (C0123...)")
        return
    problem = channel_problem(channel)
    if problem:
        report.add("error", f"DRILL_CHANNEL {problem}")
    else:
        report.programs = [single_program(channel=channel, schedule=settings.schedule)]


def _check_slack(report: CheckReport) -> None:
    settings = report.settings
    if any(f.message.startswith("SLACK_BOT_TOKEN") for f in report.errors):
        report.add("error", "Slack not asked: fix SLACK_BOT_TOKEN first")
        return
    assert settings.slack_bot_token is not None
    token = settings.slack_bot_token.get_secret_value()
    client = make_client(token=token, base_url=settings.slack_api_url, connection_retries=0)
    gateway = SlackGateway(client)
    try:
        identity = gateway.verify_auth()
    except DrillbotError as exc:
        report.add("error", str(exc))
        return
    bot_name = str(identity.get("user") or "drillbot")
    team = identity.get("team")
    report.confirmed.append(
        f"Slack: SLACK_BOT_TOKEN works: workspace {team!r} ({identity.get('team_id')}), "
        f"bot user @{bot_name} ({identity.get('user_id')})"
        if team
        else f"Slack: SLACK_BOT_TOKEN works: workspace {identity.get('team_id')}, bot user @{bot_name} "
        f"({identity.get('user_id')})"
    )
    for program in report.programs:
        label = f"{program.channel} (program {program.name!r})" if settings.drill_programs_file else program.channel
        try:
            error = gateway.channel_access(program.channel)
        except OSError as exc:
            report.add("error", f"Slack: cannot check {label}: {connection_problem(exc, settings.slack_api_url)}")
            continue
        if error is None:
            report.confirmed.append(f"Slack: @{bot_name} is in {label}")
        elif error == "not_in_channel":
            report.add("error", f"Slack: @{bot_name} is not in {label}: open the channel in Slack and type "
                       f"/invite @{bot_name}")
        elif error == "channel_not_found":
            report.add("error", f"Slack: channel {label} not found: check the ID ({CHANNEL_ID_HINT}); for a "
                       f"private channel, /invite @{bot_name} there first")
        elif error == "missing_scope":
            report.add("error", f"Slack: reading {label} needs a scope the app lacks: update the app from "
                       "`drillbot manifest` and reinstall it")
        else:
            report.add("error", f"Slack: conversations.history in {label} answered {error}")
    if report.mode == "socket" and settings.slack_app_token is not None and not settings.missing("slack_app_token"):
        _check_app_token(report, settings)


def _check_app_token(report: CheckReport, settings: Settings) -> None:
    """apps.connections.open with the app-level token: what Socket Mode does first when it connects."""
    assert settings.slack_app_token is not None
    client = WebClient(base_url=settings.slack_api_url, timeout=HTTP_TIMEOUT_SECONDS)
    try:
        client.apps_connections_open(app_token=settings.slack_app_token.get_secret_value())
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown") if exc.response is not None else "unknown"
        report.add("error", f"Slack refused SLACK_APP_TOKEN (apps.connections.open: {error}); create an app-level "
                   "token with connections:write (Basic Information -> App-Level Tokens)")
        return
    except OSError as exc:
        cause = connection_problem(exc, settings.slack_api_url)
        report.add("error", f"Slack: cannot open a Socket Mode connection: {cause}")
        return
    report.confirmed.append("Slack: SLACK_APP_TOKEN opens a Socket Mode connection")
