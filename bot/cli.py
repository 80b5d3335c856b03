"""The `drillbot` command line: run, post, reveal, check, leaderboard, questions.

Every command loads Settings once, upgrades the database schema if needed, and turns any DrillbotError
into one line on stderr (`error: ...`, exit 1), with secrets masked. Nothing prints a traceback unless
DRILLBOT_DEBUG=1.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from bot.domain.questions import load_bank
from bot.errors import ConfigError, DrillbotError
from bot.logs import configure_logging, mask
from bot.runtime import Bot, Runtime, build_runtime
from bot.settings import Settings, channel_problem, load_settings

__all__ = ["main"]

log = logging.getLogger("bot")
STOP_DEADLINE_SECONDS = 9.0


def _secrets(settings: Settings | None) -> list[str]:
    if settings is None:
        return []
    values = (
        settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token, settings.drill_grader_api_key
    )
    return [v.get_secret_value() for v in values if v is not None]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings | None = None
    # "Now" for the drill loop; a caller running the commands in-process (the tests) may pass its own.
    clock: Callable[[], datetime] = field(default=_now)


def _fail(message: str, settings: Settings | None = None) -> NoReturn:
    click.echo(f"error: {mask(message, _secrets(settings))}", err=True)
    sys.exit(1)


class _Group(click.Group):
    """Turns every error into one masked line; tracebacks only with DRILLBOT_DEBUG=1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DrillbotError as exc:
            state = ctx.find_object(Context)
            _fail(str(exc), state.settings if state else None)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("DRILLBOT_DEBUG"):
                raise
            state = ctx.find_object(Context)
            _fail(
                f"unexpected {exc.__class__.__name__}: {exc} (DRILLBOT_DEBUG=1 shows the traceback)",
                state.settings if state else None,
            )


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """drillbot: daily interview drills in Slack.

    \b
    Look first (no Slack app needed): drillbot preview, drillbot questions.
    Set up: drillbot manifest --socket (the app to create), then drillbot check.
    """
    ctx.ensure_object(Context)
    # One-shot commands report their outcome themselves, in one line; -v shows the logs behind it.
    configure_logging(logging.DEBUG if verbose else logging.CRITICAL)


def _settings(ctx: click.Context) -> Settings:
    state: Context = ctx.ensure_object(Context)
    if state.settings is None:
        state.settings = load_settings()
        level = logging.getLogger().level
        configure_logging(level, _secrets(state.settings), state.settings.drill_log_format)
    return state.settings


@contextlib.contextmanager
def _runtime(ctx: click.Context, settings: Settings, **options: Any) -> Iterator[Runtime]:
    """The runtime of one command, closed when it is done (its connections closed)."""
    runtime = build_runtime(settings, clock=ctx.ensure_object(Context).clock, **options)
    try:
        yield runtime
    finally:
        runtime.service.close()
        runtime.db.dispose()


# -- run ------------------------------------------------------------------------------------------


@main.command(short_help="Run the bot: the Slack app and the drill scheduler.")
@click.option("--http", "mode", flag_value="http", help="Serve Slack's HTTP requests (POST /slack/events).")
@click.option("--socket", "mode", flag_value="socket", help="Connect through Socket Mode (no public URL).")
@click.option("--port", type=int, default=None, help="HTTP port (default: PORT, 3000).")
@click.option("--host", default="0.0.0.0", show_default=True, help="HTTP bind address.")
@click.pass_context
def run(ctx: click.Context, mode: str | None, port: int | None, host: str) -> None:
    """Run the bot: the Slack app plus the drill scheduler, in one process."""
    settings = _settings(ctx)
    configure_logging(min(logging.getLogger().level, logging.INFO), _secrets(settings), settings.drill_log_format)
    if mode is None:
        mode = "socket" if settings.slack_app_token else "http"
    settings.require("slack_bot_token")
    settings.require("slack_signing_secret" if mode == "http" else "slack_app_token")
    if settings.drill_channel is not None and not settings.drill_programs_file:
        problem = channel_problem(settings.drill_channel)
        if problem:
            raise ConfigError(f"DRILL_CHANNEL {problem}")
    if settings.drill_channel is None:
        log.warning("DRILL_CHANNEL is not set: no scheduled drills, only /interview-question")
    runtime = build_runtime(settings, verify_token=True, clock=ctx.ensure_object(Context).clock)
    bot = Bot(runtime, mode=mode, host=host, port=settings.port if port is None else port)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    bot.start()
    _log_started(bot)
    # Everything built so far lives as long as the process (the bank, the app, SQLAlchemy's mappers and
    # compiled statements): out of the garbage collector's sight, a full collection no longer walks it. It
    # did, about 120,000 objects, and each such pause (tens of milliseconds) held every request in flight.
    gc.collect()
    gc.freeze()
    stop.wait()
    if not bot.stop(deadline_seconds=STOP_DEADLINE_SECONDS):
        # Past the deadline: exit anyway. Every step is crash-safe (claims + reconcile on restart).
        logging.shutdown()
        os._exit(0)
    log.info("stopped")


def _log_started(bot: Bot) -> None:
    """A few lines saying what runs: the workspace and bot user, each drill channel with its schedule and
    next drill, and the database (its password hidden). The mode was logged as the front end started."""
    from datetime import UTC, datetime

    runtime = bot.runtime
    who = runtime.identity or {}
    team = f"{who['team']} ({who.get('team_id')})" if who.get("team") else str(who.get("team_id", "?"))
    log.info("Slack workspace %s, bot user @%s (%s)", team, who.get("user", "?"), who.get("user_id", "?"))
    now = datetime.now(UTC)
    for program in runtime.service.programs:
        schedule = program.schedule
        upcoming = schedule.next_drill(now)
        if schedule.off:
            when = "none (DRILL_SCHEDULE=off: only `drillbot post`)"
        else:
            when = upcoming.strftime("%a %Y-%m-%d %H:%M %Z") if upcoming else "none (every slot is a skip date)"
        name = "" if program.name == "default" else f" (program {program.name})"
        log.info(
            "drill channel %s%s: schedule '%s' %s, next drill %s", program.channel, name, schedule.crontab,
            schedule.tz.key, when,
        )
    log.info("database %s", runtime.db.url.render_as_string(hide_password=True))


# -- one-shot commands ----------------------------------------------------------------------------


@main.command(short_help="Post today's drill now (at most one a day).")
@click.option("--channel", default=None, help="The program's channel (needed when drills.yaml has several).")
@click.option("--force", is_flag=True, help="Post even though today is a skip date (DRILL_SKIP_DATES).")
@click.pass_context
def post(ctx: click.Context, channel: str | None, force: bool) -> None:
    """Post today's drill now (once a day per channel; a second call posts nothing).

    On a skip date (DRILL_SKIP_DATES, in the program's time zone) it posts nothing and says so, as the
    schedule does; --force posts anyway.
    """
    from bot.drills import PostResult

    settings = _settings(ctx)
    settings.require("slack_bot_token")
    with _runtime(ctx, settings) as runtime:
        service = runtime.service
        known = [p.channel for p in service.programs]
        if channel is not None and known and channel not in known:
            raise ConfigError(f"--channel {channel} is not a drill program's channel ({', '.join(known)})")
        program = service.program_for(channel)
        channel = program.channel
        now = service.clock()
        if program.schedule.skips(now) and not force:
            day = program.schedule.local_date(now).isoformat()
            click.echo(
                f"Today ({day} in {program.schedule.tz.key}) is a skip date (DRILL_SKIP_DATES): nothing posted "
                f"to {channel}. `drillbot post --force` posts anyway."
            )
            return
        outcome = service.post_today(channel, retry_failed=True)
    if outcome.result in (PostResult.POSTED, PostResult.ADOPTED):
        click.echo(f"Posted today's drill ({outcome.question_id}) to {channel}, ts {outcome.ts}.")
    elif outcome.result == PostResult.EXISTS:
        click.echo(f"Today's drill is already posted in {channel} ({outcome.question_id}); nothing posted.")
    elif outcome.result in (PostResult.IN_PROGRESS, PostResult.LOST):
        click.echo(f"Today's drill for {channel} is being posted by another process; nothing posted.")
    elif outcome.result == PostResult.RETRYING:
        _fail(
            f"Slack did not confirm the post ({outcome.detail}); run `drillbot post` again (it checks Slack "
            "first, so it never posts twice) or let the running bot retry",
            settings,
        )
    else:
        _fail(outcome.detail or "the drill could not be posted", settings)


@main.command(short_help="Reveal the guidance of every drill past its deadline.")
@click.option("--due", is_flag=True, required=True, help="Reveal every open drill whose deadline has passed.")
@click.pass_context
def reveal(ctx: click.Context, due: bool) -> None:
    """Reveal the guidance of every open drill whose deadline has passed."""
    settings = _settings(ctx)
    settings.require("slack_bot_token")
    with _runtime(ctx, settings) as runtime:
        revealed = runtime.service.reveal_due(retry_failed=True)
    if revealed:
        click.echo(f"Revealed {len(revealed)} drill(s): {', '.join(str(i) for i in revealed)}.")
    else:
        click.echo("Nothing to reveal.")


@main.command(short_help="Validate settings, the question bank and drills.yaml.")
@click.option("--strict", is_flag=True, help="Treat warnings (the bank's style rules) as errors.")
@click.option("--slack", "ask_slack", is_flag=True, help="Also ask Slack: the token works, the bot is in each channel.")
@click.option("--grader", "ask_grader", is_flag=True, help="Also make one test call to DRILL_GRADER_URL.")
@click.option("--http", "mode", flag_value="http", help="Check for HTTP mode (default without SLACK_APP_TOKEN).")
@click.option("--socket", "mode", flag_value="socket", help="Check for Socket Mode (default with SLACK_APP_TOKEN).")
@click.pass_context
def check(ctx: click.Context, strict: bool, ask_slack: bool, ask_grader: bool, mode: str | None) -> None:
    """Validate settings, the question bank and drills.yaml, reporting every problem, one line each.

    Errors (exit 1): invalid settings, placeholders left from .env.example, a missing secret for the mode,
    a channel name where an ID is needed, a structural problem in the bank or drills.yaml. Warnings (exit 0):
    the bank's style rules; --strict makes them errors. --slack also calls Slack; --grader makes one test
    call to the grader.
    """
    from bot.checks import run_checks

    report = run_checks(mode=mode, strict=strict, slack=ask_slack, grader=ask_grader)
    ctx.ensure_object(Context).settings = report.settings
    secrets = _secrets(report.settings)
    for finding in report.findings:
        click.echo(f"{finding.level}: {mask(finding.message, secrets)}", err=True)
    if report.errors:
        for line in report.confirmed:
            click.echo(mask(line, secrets))
        sys.exit(1)
    click.echo(report.summary())
    for line in report.confirmed:
        click.echo(mask(line, secrets))


@main.command(short_help="Show the streak leaderboard (JSON or a table).")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="table", show_default=True)
@click.option("--channel", default=None, help="Channel ID (default: DRILL_CHANNEL).")
@click.pass_context
def leaderboard(ctx: click.Context, fmt: str, channel: str | None) -> None:
    """Streaks of everyone with at least one counted answer."""
    settings = _settings(ctx)
    with _runtime(ctx, settings, load_questions=bool(settings.drill_programs_file)) as runtime:
        rows = runtime.service.leaderboard(channel)
        private = runtime.service.private_users()
    if fmt == "json":
        data = [
            {
                "user_id": s.user_id,
                "current_streak": s.current,
                "longest_streak": s.longest,
                "total_answers": s.total,
            }
            for s in rows
        ]
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Streak leaderboard ({channel or settings.drill_channel or 'all channels'})")
    for column in ("#", "user", "current streak", "longest streak", "answers"):
        table.add_column(column, justify="left" if column == "user" else "right")
    for rank, s in enumerate(rows, start=1):
        name = f"{s.user_id} (private)" if s.user_id in private else s.user_id
        table.add_row(str(rank), name, str(s.current), str(s.longest), str(s.total))
    Console().print(table if rows else "No answers yet.")


@main.command(short_help="List the question bank, optionally filtered.")
@click.option("--category", "categories", multiple=True, help="Only this category (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only questions with this tag (repeatable: all must match).")
@click.option("--difficulty", type=click.Choice(["easy", "medium", "hard"]), default=None)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "plain", "json"]),
    default=None,
    help="table on a terminal; plain (one tab-separated line per question) when piped or redirected.",
)
@click.pass_context
def questions(ctx: click.Context, categories: tuple[str, ...], tags: tuple[str, ...], difficulty: str | None,
              fmt: str | None) -> None:
    """List the question bank, optionally filtered.

    Plain lines are id, category, difficulty, tags (comma-separated) and title, separated by tabs.
    """
    settings = _settings(ctx)
    bank = load_bank(settings.questions_file)
    unknown = []
    bad_categories = sorted({c for c in categories if c.lower() not in bank.categories})
    if bad_categories:
        known = ", ".join(sorted(bank.categories))
        unknown.append(f"unknown category {', '.join(map(repr, bad_categories))} (categories: {known})")
    bad_tags = bank.unknown_terms(tags)
    if bad_tags:
        unknown.append(f"unknown tag {', '.join(map(repr, bad_tags))} (tags: {', '.join(sorted(bank.tags))})")
    if unknown:
        raise ConfigError("; ".join(unknown))
    if fmt is None:
        fmt = "table" if sys.stdout.isatty() else "plain"
    wanted = {c.lower() for c in categories}
    selected = [
        q
        for q in bank.matching([*tags, *([difficulty] if difficulty else [])])
        if not wanted or q.category in wanted
    ]
    if fmt == "json":
        click.echo(json.dumps([q.model_dump(mode="json") for q in selected], indent=2, ensure_ascii=False))
        return
    if fmt == "plain":
        for q in selected:
            click.echo("\t".join((q.id, q.category, q.difficulty, ",".join(q.tags), q.title)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(selected)} of {len(bank.questions)} questions ({settings.questions_file})")
    for column in ("id", "category", "difficulty", "tags", "title"):
        # An id is what people copy into `drillbot preview`: never wrapped; the title folds instead.
        table.add_column(column, no_wrap=column in ("id", "difficulty"), overflow="fold")
    for q in selected:
        table.add_row(q.id, q.category, q.difficulty, ", ".join(q.tags), q.title)
    Console().print(table)


@main.group(short_help="Database schema commands.")
def db() -> None:
    """Database schema commands."""


@db.command("upgrade", short_help="Apply pending database migrations.")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations (every command also does this on its own)."""
    from bot.domain.questions import load_bank
    from bot.errors import QuestionBankError
    from storage.db import Database

    settings = _settings(ctx)
    database = Database(settings.database_url)
    try:
        before = database.revision()
        try:  # drills posted before they kept a copy of their question get one from the bank
            bank = load_bank(settings.questions_file)
        except QuestionBankError:
            bank = None
        database.upgrade(bank=bank)
        after = database.revision()
    finally:
        database.dispose()
    click.echo(f"Database at revision {after}" + (" (unchanged)." if before == after else f" (was {before})."))


@main.command(short_help="Print Block Kit Builder links and JSON of the messages.")
@click.argument("question_id", required=False)
@click.option("--links", is_flag=True, help="Print only the three Block Kit Builder links, one per line.")
@click.pass_context
def preview(ctx: click.Context, question_id: str | None, links: bool) -> None:
    """Show a drill, its reveal and the Home tab without calling Slack.

    Prints one JSON object: the Block Kit Builder links first (open one to see the message), then the
    Block Kit JSON of each. --links prints only the links.
    """
    from datetime import UTC, datetime
    from urllib.parse import quote

    from bot import blocks
    from bot.domain.streaks import Streak

    settings = _settings(ctx)
    bank = load_bank(settings.questions_file)
    question = bank.get(question_id) if question_id else bank.questions[0]
    if question is None:
        raise ConfigError(f"no question with id {question_id!r} in {settings.questions_file}")
    deadline = datetime.now(UTC) + settings.drill_answer_window
    drill = blocks.drill_message(question, deadline=deadline, answered=3, sealed=settings.drill_sealed, drill_id=1)
    reveal = blocks.reveal_message(question, answered=7, drill_id=1)
    home = blocks.home_view(
        blocks.HomeData(
            streak=Streak("U0PREVIEW", current=3, longest=5, total=12),
            recent=[blocks.RecentDrill(deadline.date(), question, 7, True)],
            ratings={question.category: {"nailed": 2, "partly": 1}},
        )
    )

    def builder(payload: dict[str, Any]) -> str:
        return "https://app.slack.com/block-kit-builder#" + quote(json.dumps(payload, separators=(",", ":")))

    links_by_surface = {
        "drill": builder({"blocks": drill["blocks"]}),
        "reveal": builder({"blocks": reveal["blocks"]}),
        "home": builder(home),
    }
    if links:
        for surface, link in links_by_surface.items():
            click.echo(f"{surface}: {link}")
        return
    output = {
        "question_id": question.id,
        "block_kit_builder": links_by_surface,
        "drill": drill,
        "reveal": reveal,
        "home": home,
    }
    click.echo(json.dumps(output, indent=2, ensure_ascii=False))


@main.command(short_help="Print the Slack app manifest for Socket Mode or your URL.")
@click.option("--socket", "socket_mode", is_flag=True, help="Socket Mode: no public URL needed (as manifest.yaml).")
@click.option(
    "--url", default=None, metavar="https://HOST", help="HTTP mode: Slack sends requests to HOST/slack/events."
)
def manifest(socket_mode: bool, url: str | None) -> None:
    """Print a complete Slack app manifest, ready to paste into "Create New App -> From a manifest".

    --socket for Socket Mode (no public URL), or --url https://HOST for HTTP mode, where
    https://HOST/slack/events is put in all three places Slack sends requests to.
    """
    from bot.manifest import render_manifest

    if socket_mode == (url is not None):
        raise ConfigError("choose one mode: --socket (no public URL) or --url https://HOST (HTTP mode)")
    click.echo(render_manifest(url=url), nl=False)


@main.command(short_help="Export drills, answers and streaks (JSON or CSV).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="json", show_default=True)
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Only drills on or after DATE.")
@click.option("--channel", default=None, help="Only this channel (default: every channel).")
@click.pass_context
def export(ctx: click.Context, fmt: str, since: Any, channel: str | None) -> None:
    """Export drills, answers and streaks: JSON {drills, answers, streaks}, or CSV one row per answer."""
    from bot.export import export as export_data

    settings = _settings(ctx)
    with _runtime(ctx, settings, load_questions=bool(settings.drill_programs_file), metrics=False) as runtime:
        text = export_data(
            runtime.db,
            fmt=fmt,
            since=since.date() if since else None,
            channel=channel,
            leaderboard=runtime.service.leaderboard,
        )
    click.echo(text, nl=False)
