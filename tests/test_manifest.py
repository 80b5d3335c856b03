"""`drillbot manifest` and manifest.yaml: one source, complete manifests, least-privilege scopes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.manifest import BOT_SCOPES, render_manifest
from tests.clirunner import invoke

ROOT = Path(__file__).resolve().parent.parent
EVENTS_URL = "https://drills.acme.dev/slack/events"


def run(*args: str) -> tuple[int, str, str]:
    result = invoke(*args)
    return result.exit_code, result.stdout, result.stderr


def test_the_repository_manifest_is_what_the_generator_prints():
    # Regenerate with: drillbot manifest --socket > manifest.yaml
    assert (ROOT / "manifest.yaml").read_text(encoding="utf-8") == render_manifest()


def test_manifest_socket_is_complete_and_needs_no_edits():
    code, out, err = run("manifest", "--socket")
    assert code == 0, err
    assert out == render_manifest()
    data = yaml.safe_load(out)
    assert data["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in data["settings"]["event_subscriptions"]
    assert "request_url" not in data["settings"]["interactivity"]
    assert "url" not in data["features"]["slash_commands"][0]
    assert "example.com" not in out and "YOUR" not in out.split("\ndisplay_information:")[1]


@pytest.mark.parametrize("given", ["https://drills.acme.dev", "https://drills.acme.dev/", EVENTS_URL])
def test_manifest_url_puts_the_request_url_in_all_three_places(given):
    code, out, err = run("manifest", "--url", given)
    assert code == 0, err
    data = yaml.safe_load(out)
    assert data["features"]["slash_commands"][0]["url"] == EVENTS_URL
    assert data["settings"]["event_subscriptions"]["request_url"] == EVENTS_URL
    assert data["settings"]["interactivity"]["request_url"] == EVENTS_URL
    assert data["settings"]["socket_mode_enabled"] is False
    assert "example.com" not in out


def test_both_modes_describe_the_same_app():
    socket = yaml.safe_load(render_manifest())
    http = yaml.safe_load(render_manifest(url="https://drills.acme.dev"))
    for section in ("display_information", "oauth_config"):
        assert socket[section] == http[section]
    assert socket["settings"]["event_subscriptions"]["bot_events"] == http["settings"]["event_subscriptions"]["bot_events"]
    del http["features"]["slash_commands"][0]["url"]
    assert socket["features"] == http["features"]


def test_least_privilege_scopes_each_with_a_reason():
    data = yaml.safe_load(render_manifest())
    scopes = data["oauth_config"]["scopes"]["bot"]
    # The digest DM is chat.postMessage to a user ID (chat:write); im:write (conversations.open) and
    # im:history are for the checklist DM, found again after a crash before it is sent again.
    assert scopes == ["chat:write", "commands", "channels:history", "groups:history", "im:write", "im:history"]
    text = render_manifest()
    for scope, reason in BOT_SCOPES:
        assert reason
        assert any(line.strip().startswith(f"- {scope}") and "# " in line for line in text.splitlines())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "choose one mode"),
        (["--socket", "--url", "https://x.dev"], "choose one mode"),
        (["--url", "http://drills.acme.dev"], "https://"),
        (["--url", "https://drills.acme.dev/?x=1"], "not a plain https://HOST URL"),
        (["--url", "drills.acme.dev"], "https://"),
    ],
)
def test_manifest_refuses_an_unclear_mode_or_url_in_one_line(args, expected):
    code, out, err = run("manifest", *args)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], err
