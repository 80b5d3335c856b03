"""Pure domain logic: no Slack, no SQLAlchemy, no I/O beyond reading the question bank files."""
