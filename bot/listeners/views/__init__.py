"""Modal submissions: the sealed answer."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot import blocks
from bot.drills import DrillService, SealedResult

__all__ = ["register"]


def register(app: App, service: DrillService) -> None:
    def submit_sealed_answer(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        # Stored before the ack (a few milliseconds): an accepted answer is a stored answer.
        metadata = str(view.get("private_metadata") or "")
        values = ((view.get("state") or {}).get("values") or {}).get(blocks.ANSWER_BLOCK) or {}
        text = str((values.get(blocks.ANSWER_INPUT) or {}).get("value") or "")
        user_id = str((body.get("user") or {}).get("id") or "")
        if not metadata.isdigit() or not user_id:
            ack(response_action="errors", errors={blocks.ANSWER_BLOCK: "This form is out of date; open it again."})
            return
        result = service.submit_sealed_answer(int(metadata), user_id, text)
        if result == SealedResult.STORED:
            ack()
        else:
            ack(response_action="errors", errors={blocks.ANSWER_BLOCK: blocks.SEALED_SUBMIT_ERRORS[result]})

    app.view(blocks.ANSWER_VIEW)(submit_sealed_answer)
