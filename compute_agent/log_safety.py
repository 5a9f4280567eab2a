"""Log lines that text from requests or records cannot break.

An instance name, an error from libvirt or anything else a message quotes
may hold a newline (which forges a log line), a NUL, a carriage return or
a terminal escape. install() makes every log record of the process escape
them, once and centrally, whichever handler writes it:

- the message (format string and arguments, as getMessage() gives it) is
  escaped completely, so it stays on one line;
- oslo.log's error summary (the exception's text that it appends to the
  message's line) likewise;
- a traceback keeps its line breaks, each line of it carrying oslo.log's
  exception prefix, and has every other control character escaped.

It works on the record, not on the handlers, so that handlers oslo.log
builds again later (a reloaded log config) escape as well.
"""

import logging
import re

# C0 controls, DEL, C1 controls, the Unicode line and paragraph separators,
# and lone surrogates (which no UTF-8 log file can take).
_UNSAFE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
_UNSAFE_BUT_NEWLINE = re.compile(
    '[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
_NAMED = {'\n': '\\n', '\r': '\\r', '\t': '\\t'}


def _escaped(match):
    character = match.group()
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    return f'\\x{code:02x}' if code < 0x100 else f'\\u{code:04x}'


def has_unsafe(text):
    """Whether text holds a character escape() would rewrite: what a
    request may not put in a name or a message."""
    return _UNSAFE.search(text) is not None


def escape(text):
    """text with every control character written as a visible escape."""
    return _UNSAFE.sub(_escaped, text)


def escape_multiline(text):
    """escape(), except that line breaks stay (a traceback's)."""
    return _UNSAFE_BUT_NEWLINE.sub(_escaped, text)


class EscapingLogRecord(logging.LogRecord):
    """A LogRecord whose rendered text has its control characters
    escaped. Formatters read error_summary and exc_text from the record's
    __dict__, so the setters store the escaped value there."""

    def getMessage(self):
        return escape(super().getMessage())

    @property
    def error_summary(self):
        return self.__dict__.get('error_summary')

    @error_summary.setter
    def error_summary(self, value):
        self.__dict__['error_summary'] = (
            escape(value) if isinstance(value, str) else value)

    @property
    def exc_text(self):
        return self.__dict__.get('exc_text')

    @exc_text.setter
    def exc_text(self, value):
        self.__dict__['exc_text'] = (
            escape_multiline(value) if isinstance(value, str) else value)


def install():
    """Make every log record the process creates from now on escape
    control characters. Call once logging is set up."""
    logging.setLogRecordFactory(EscapingLogRecord)
