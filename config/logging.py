"""Logging helpers referenced from settings.LOGGING."""

import logging


class OneLine(logging.Filter):
    """Drop the traceback: for expected noise such as a request with a bad Host header, the
    message says everything; a traceback per probe would bury the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True
