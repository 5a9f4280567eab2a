"""What SIGHUP re-reads and reopens, without restarting anything.

oslo.config's mutate support re-reads the config files and applies the
options marked mutable (a change to any other one is logged as ignored:
it needs a restart). oslo.log applies ``debug`` and ``log_config_append``
through its own hook; ``default_log_levels`` only sets loggers' levels, so
the agent makes it mutable too and applies it here. The log files are
reopened at their configured paths, so that logrotate can rename them.
"""

import logging
import logging.handlers
from importlib import metadata

from oslo_config import types

LOG = logging.getLogger(__name__)

LOG_LEVELS = 'default_log_levels'


def make_log_levels_mutable():
    """Mark oslo.log's default_log_levels option mutable.

    oslo.log's options are reached through the entry point it publishes
    for the sample generator, which lists the very objects it registers.
    """
    for entry_point in metadata.entry_points(group='oslo.config.opts',
                                             name='oslo.log'):
        for _group, options in entry_point.load()():
            for option in options:
                if option.name == LOG_LEVELS:
                    option.mutable = True


def register_hooks(conf):
    conf.register_mutate_hook(_apply_log_levels)


def reload_config(conf):
    """Re-read the mutable options and reopen the log files.

    :returns: one line saying what changed, for the log.
    """
    changes = conf.mutate_config_files()
    reopened = reopen_log_files()
    # The values as parsed: those in the changes are spelled as in the
    # file, or None where the file did not set the option.
    changed = '; '.join(
        f'{name} = {_show(_value(conf, group, name))}' if group is None
        else f'{group}.{name} = {_show(_value(conf, group, name))}'
        for group, name in sorted(changes, key=lambda key: (key[0] or '',
                                                            key[1])))
    return (f'{"changed " + changed if changed else "no option changed"}; '
            f'reopened {len(reopened)} log file(s)')


def _value(conf, group, name):
    dest = name.replace('-', '_')   # e.g. log-config-append
    return conf[dest] if group is None else conf[group][dest]


def _show(value):
    if isinstance(value, list):
        return ','.join(map(str, value)) or '(empty)'
    return str(value)


def _apply_log_levels(conf, fresh):
    if (None, LOG_LEVELS) not in fresh:
        return
    old, _new = fresh[(None, LOG_LEVELS)]
    levels = _parse_levels(conf.default_log_levels or [])
    # The previous value comes as the config file spelled it.
    if isinstance(old, str):
        old = types.List()(old)
    for name in _parse_levels(old or []).keys() - levels.keys():
        # No longer listed: inherit from the root logger again.
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _parse_levels(pairs):
    """{logger name: level} from oslo.log's 'logger=LEVEL' pairs."""
    levels = {}
    for pair in pairs:
        name, _sep, level = pair.partition('=')
        level = int(level) if level.isdigit() else level.upper()
        if not name or (isinstance(level, str) and not isinstance(
                logging.getLevelName(level), int)):
            LOG.warning('Ignoring %s entry %r: not logger=LEVEL',
                        LOG_LEVELS, pair)
            continue
        levels[name] = level
    return levels


def reopen_log_files():
    """Reopen every log file at its path; returns the paths."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)]
    handlers = {handler for logger in loggers for handler in logger.handlers
                if isinstance(handler, logging.FileHandler)}
    for handler in handlers:
        _reopen(handler)
    return sorted(handler.baseFilename for handler in handlers)


def _reopen(handler):
    if isinstance(handler, logging.handlers.WatchedFileHandler):
        # It reopens by itself when its file was renamed; under its lock,
        # as emit() does.
        handler.acquire()
        try:
            handler.reopenIfNeeded()
        finally:
            handler.release()
        return
    # Always append: the file at the path may be the one still in use.
    stream = open(handler.baseFilename, 'a', encoding=handler.encoding,
                  errors=handler.errors)
    previous = handler.setStream(stream)
    if previous is not None:
        previous.close()
