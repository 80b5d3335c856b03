from __future__ import annotations

import re

from slack_bolt import Ack, App

from bot import blocks
from bot.drills import DrillService
from bot.listeners.actions.drill import answer_opener, rater
from bot.listeners.actions.feedback import checklist_saver
from bot.listeners.actions.practice import another_one, home_practice, show_guidance

__all__ = ["register"]


def register(app: App, service: DrillService) -> None:
    # Every button acks at once; the work (database, views.open, response_url) runs as a lazy listener.
    app.action(blocks.ANSWER_ACTION)(ack=_ack, lazy=[answer_opener(service)])
    app.action(re.compile(f"^{blocks.RATE_ACTION_PREFIX}(nailed|partly|missed)$"))(ack=_ack, lazy=[rater(service)])
    app.action(blocks.PRACTICE_GUIDANCE)(ack=_ack, lazy=[show_guidance(service)])
    app.action(blocks.PRACTICE_ANOTHER)(ack=_ack, lazy=[another_one(service)])
    app.action(blocks.HOME_PRACTICE)(ack=_ack, lazy=[home_practice(service)])
    # The checklist: each tick and the Save button store the ticked boxes (the last one wins).
    app.action(blocks.CHECKLIST_INPUT)(ack=_ack, lazy=[checklist_saver(service)])
    app.action(blocks.CHECKLIST_SAVE)(ack=_ack, lazy=[checklist_saver(service)])


def _ack(ack: Ack) -> None:
    ack()
