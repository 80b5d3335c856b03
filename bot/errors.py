"""The one exception hierarchy of drillbot.

Every error a user can cause or fix derives from `DrillbotError`; its message is a single line that names
the problem (file, line, field or setting) and is safe to print: it never contains a secret. The CLI prints
it as `error: <message>` and exits 1; nothing else is shown, so no traceback reaches a user.

- `ConfigError`: a setting is missing or invalid.
- `QuestionBankError`: the question bank cannot be loaded or breaks a rule.
- `SlackSetupError`: Slack refused a call for a reason retrying cannot fix (bad token, bot not in the
  channel, channel not found). Logged once with the fix; the job does not loop on it.
- `RetryLater`: a request cannot be handled yet (e.g. a reply to a drill whose post is unconfirmed); the
  listener answers 5xx so Slack redelivers it.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DrillbotError", "QuestionBankError", "RetryLater", "SlackSetupError"]


class DrillbotError(Exception):
    """Base class: a one-line, secret-free message meant for the person running drillbot."""


class ConfigError(DrillbotError):
    """A setting is missing or invalid."""


class QuestionBankError(DrillbotError):
    """The question bank cannot be loaded, or a question breaks a rule."""


class SlackSetupError(DrillbotError):
    """Slack refused a call in a way that only a configuration change can fix."""


class RetryLater(DrillbotError):
    """Not handled yet; Slack should redeliver the request."""
