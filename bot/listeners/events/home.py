"""`app_home_opened`: publish the person's Home tab (their own numbers; managers also see the team)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient

from bot.drills import DrillService
from bot.home import home_view_for

__all__ = ["home_publisher"]


def home_publisher(service: DrillService) -> Callable[..., None]:
    def publish_home(event: dict[str, Any], client: WebClient) -> None:
        user_id = event.get("user")
        if event.get("tab", "home") != "home" or not isinstance(user_id, str):
            return
        client.views_publish(user_id=user_id, view=home_view_for(service, user_id))

    return publish_home
