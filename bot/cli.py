"""The `drillbot` command line: run, post, reveal, check, leaderboard, questions.

Every command loads Settings once, upgrades the database schema if needed, and turns any DrillbotError
into one line on stderr (`error: ...`, exit 1), with secrets masked. Nothing prints a traceback unless
DRILLBOT_DEBUG=1.
"""

from __future__ import annotations

import contextlib
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

from bot.domain.questions import lint, load_bank
from bot.errors import ConfigError, DrillbotError
from bot.logs import configure_logging, mask
from bot.runtime import Bot, Runtime, build_runtime
from bot.settings import Settings, load_settings

__all__ = ["main"]

log = logging.getLogger("bot")
STOP_DEADLINE_SECONDS = 9.0


def _secrets(settings: Settings | None) -> list[str]:
    if settings is None:
        return []
    values = (settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token)
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
    """drillbot: daily interview drills in Slack."""
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
    """The runtime of one command, closed when it is done (its claims released, its connections closed)."""
    runtime = build_runtime(settings, clock=ctx.ensure_object(Context).clock, **options)
    try:
        yield runtime
    finally:
        runtime.service.close()
        runtime.db.dispose()


# -- run ------------------------------------------------------------------------------------------


@main.command()
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
    stop.wait()
    if not bot.stop(deadline_seconds=STOP_DEADLINE_SECONDS):
        # Past the deadline: exit anyway. Every step is crash-safe (claims + reconcile on restart).
        logging.shutdown()
        os._exit(0)
    log.info("stopped")


# -- one-shot commands ----------------------------------------------------------------------------


@main.command()
@click.option("--channel", default=None, help="The program's channel (needed when drills.yaml has several).")
@click.pass_context
def post(ctx: click.Context, channel: str | None) -> None:
    """Post today's drill now (once a day per channel; a second call posts nothing)."""
    from bot.drills import PostResult

    settings = _settings(ctx)
    settings.require("slack_bot_token")
    with _runtime(ctx, settings) as runtime:
        service = runtime.service
        known = [p.channel for p in service.programs]
        if channel is not None and known and channel not in known:
            raise ConfigError(f"--channel {channel} is not a drill program's channel ({', '.join(known)})")
        channel = service.program_for(channel).channel
        outcome = service.post_today(channel, retry_failed=True)
    if outcome.result in (PostResult.POSTED, PostResult.ADOPTED):
        click.echo(f"Posted today's drill ({outcome.question_id}) to {channel}, ts {outcome.ts}.")
    elif outcome.result == PostResult.EXISTS:
        click.echo(f"Today's drill is already posted in {channel} ({outcome.question_id}); nothing posted.")
    elif outcome.result == PostResult.IN_PROGRESS:
        click.echo(f"Today's drill for {channel} is being posted by another process; nothing posted.")
    elif outcome.result == PostResult.RETRYING:
        _fail(
            f"Slack did not confirm the post ({outcome.detail}); run `drillbot post` again (it checks Slack "
            "first, so it never posts twice) or let the running bot retry",
            settings,
        )
    else:
        _fail(outcome.detail or "the drill could not be posted", settings)


@main.command()
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


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate settings and the question bank; exit 1 with the problem on one line."""
    from bot.drills import build_programs

    settings = _settings(ctx)
    settings.require("slack_bot_token")
    bank = load_bank(settings.questions_file)
    problems = lint(bank)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    programs = build_programs(settings, bank)

    categories = ", ".join(f"{c} {n}" for c, n in sorted(bank.categories.items()))
    difficulties = ", ".join(f"{d} {bank.difficulties.get(d, 0)}" for d in ("easy", "medium", "hard"))
    slot = settings.schedule.next_slot(datetime.now(UTC))
    next_slot = f"next slot {slot.strftime('%a %Y-%m-%d %H:%M %Z')}" if slot else "drills only by `drillbot post`"
    where = (
        f"{len(programs)} programs ({', '.join(f'{p.name} in {p.channel}' for p in programs)})"
        if settings.drill_programs_file
        else f"schedule '{settings.drill_schedule}' {settings.drill_timezone}, {next_slot}"
    )
    click.echo(f"OK: {len(bank.questions)} questions ({categories}; {difficulties}); {where}")


@main.command()
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


@main.command()
@click.option("--category", "categories", multiple=True, help="Only this category (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only questions with this tag (repeatable: all must match).")
@click.option("--difficulty", type=click.Choice(["easy", "medium", "hard"]), default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def questions(ctx: click.Context, categories: tuple[str, ...], tags: tuple[str, ...], difficulty: str | None,
              fmt: str) -> None:
    """List the question bank, optionally filtered."""
    settings = _settings(ctx)
    bank = load_bank(settings.questions_file)
    wanted = {c.lower() for c in categories}
    selected = [
        q
        for q in bank.matching([*tags, *([difficulty] if difficulty else [])])
        if not wanted or q.category in wanted
    ]
    if fmt == "json":
        click.echo(json.dumps([q.model_dump(mode="json") for q in selected], indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(selected)} of {len(bank.questions)} questions ({settings.questions_file})")
    for column in ("id", "category", "difficulty", "tags", "title"):
        table.add_column(column, overflow="fold")
    for q in selected:
        table.add_row(q.id, q.category, q.difficulty, ", ".join(q.tags), q.title)
    Console().print(table)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations (every command also does this on its own)."""
    from storage.db import Database

    settings = _settings(ctx)
    database = Database(settings.database_url)
    try:
        before = database.revision()
        database.upgrade()
        after = database.revision()
    finally:
        database.dispose()
    click.echo(f"Database at revision {after}" + (" (unchanged)." if before == after else f" (was {before})."))


@main.command()
@click.argument("question_id", required=False)
@click.pass_context
def preview(ctx: click.Context, question_id: str | None) -> None:
    """Print the Block Kit JSON of the drill, reveal and Home tab (no Slack call)."""
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

    output = {
        "question_id": question.id,
        "drill": drill,
        "reveal": reveal,
        "home": home,
        "block_kit_builder": {
            "drill": builder({"blocks": drill["blocks"]}),
            "reveal": builder({"blocks": reveal["blocks"]}),
            "home": builder(home),
        },
    }
    click.echo(json.dumps(output, indent=2, ensure_ascii=False))


@main.command()
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
