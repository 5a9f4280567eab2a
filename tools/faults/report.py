"""The faults report: for each test, what it did (its docstring's first
paragraph), how it ended, how long it took and what it found (its
'finding' detail); a failure's or skip's reason in one line."""

import importlib
import re
import textwrap

WIDTH = 79
_INDENT = ' ' * 9
_EXCEPTION_LINE = re.compile(r'^[\w.]+(Error|Exception|Failure)\b')
_LABELS = {'success': 'PASS', 'fail': 'FAIL', 'skip': 'SKIP',
           'xfail': 'XFAIL', 'uxsuccess': 'UXPASS'}


def describe(test_id):
    """The first paragraph of the test method's docstring, on one line;
    '(no docstring)' when the test cannot be found or has none."""
    module_name, _, rest = test_id.partition('(')[0].rpartition('.')
    target = None
    while module_name and target is None:
        try:
            target = importlib.import_module(module_name)
        except ImportError:
            module_name, _, attribute = module_name.rpartition('.')
            rest = f'{attribute}.{rest}'
    for attribute in rest.split('.') if target is not None else ():
        target = getattr(target, attribute, None)
    doc = getattr(target, '__doc__', None) if target is not None else None
    if not doc:
        return '(no docstring)'
    return ' '.join(doc.strip().split('\n\n')[0].split())


def _seconds(value):
    return '    ?  ' if value is None else f'{value:7.1f}s'


def _reason(outcome):
    """One line saying why a test failed or was skipped."""
    text = outcome.details.get('traceback') or \
        outcome.details.get('reason') or ''
    lines = [line.strip() for line in text.strip().splitlines()
             if line.strip()]
    # A failure message may run over several lines after the exception.
    raised = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (raised or lines or [''])[-1]


def progress_line(outcome):
    label = _LABELS.get(outcome.status, outcome.status.upper())
    return f'faults: {label:6} {_seconds(outcome.seconds)} {outcome.test_id}'


def _wrapped(prefix, text):
    return textwrap.fill(text, WIDTH, initial_indent=_INDENT + prefix,
                         subsequent_indent=_INDENT + ' ' * len(prefix),
                         break_long_words=False, break_on_hyphens=False)


def format_report(outcomes, describe=describe):
    """The report's text for a list of results.Outcome."""
    counts = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    total = sum(outcome.seconds or 0 for outcome in outcomes)
    summary = ', '.join(f'{number} {_LABELS.get(status, status).lower()}'
                        for status, number in sorted(counts.items()))
    lines = [f'== faults report: {len(outcomes)} test(s): '
             f'{summary or "none ran"}; {total:.1f} s ==']
    for outcome in outcomes:
        label = _LABELS.get(outcome.status, outcome.status.upper())
        lines.append(f'{label:6} {_seconds(outcome.seconds)} '
                     f'{outcome.test_id}')
        lines.append(_wrapped('did:   ', describe(outcome.test_id)))
        for finding in outcome.details.get('finding', '').splitlines():
            if finding.strip():
                lines.append(_wrapped('found: ', finding))
        if outcome.status != 'success':
            reason = _reason(outcome)
            if reason:
                lines.append(_wrapped('why:   ', reason))
    return '\n'.join(lines)
