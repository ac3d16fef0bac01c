"""structlog set-up: one JSON object per line on stdout (journald keeps it).

Secrets never reach a log call: camera URLs are redacted where they are bound
(see edge.redact), and the MQTT password is only read where the client is built.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info") -> None:
    """Send structlog events as JSON key-values to stdout at `level` and above.

    Libraries that log through the standard `logging` module (aiomqtt, asyncio) get the
    same JSON renderer, so every line the daemon writes parses as JSON."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))  # libraries: warnings and worse only


def get_logger(**context: object) -> structlog.stdlib.BoundLogger:
    """A logger with `context` bound to every line (e.g. camera="gate-1")."""
    return structlog.get_logger("nvr-edge").bind(**context)
