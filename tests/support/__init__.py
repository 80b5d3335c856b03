"""The test suite's shared machinery, loaded as pytest plugins by tests/conftest.py (`pytest_plugins`).

Test modules never import from here: they ask for fixtures. Importable test doubles and constants live in
tests/fakes/ (the fake Slack, signed requests, the workspace's tokens and channel).

- waiting.py      `eventually(...)`: the one poller (and FakeSlack.wait_for)
- clock.py        `FakeClock` (fixtures `clock`, `make_clock`) and `wait_ticks` for the bot's scheduler
- environment.py  the one source of settings: `make_settings` (in-process) and `bot_env` (CLI, processes)
- database.py     a migrated schema built once per session and copied per test; `database_url`, `db`
- slack.py        `fake_slack`, `start_bot` (the real bot in-process over HTTP)
- cli.py          `drillbot` in-process through click's CliRunner (`run_cli`)
- processes.py    real `python -m bot` processes: `launch` (port 0 reported, SIGTERM/SIGKILL, logs)
- markers.py      the `postgres`, `subprocess` and `slow` markers
- scheduling.py   under pytest-xdist, the modules that start processes share one worker
"""
