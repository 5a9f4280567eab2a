"""Test outcomes read from a subunit v2 stream (what stestr emits)."""

import dataclasses

import subunit
import testtools

FAILED_STATUSES = ('fail', 'uxsuccess')


@dataclasses.dataclass(frozen=True)
class Outcome:
    test_id: str
    status: str         # subunit's: success, fail, skip, xfail, ...
    seconds: float      # None when the stream lacks either timestamp
    details: dict       # attachment name -> its text

    @property
    def failed(self):
        return self.status in FAILED_STATUSES


def _text(attachment):
    if attachment.content_type.type != 'text':
        return None
    return ''.join(attachment.iter_text())


def _outcome(test):
    start, end = test['timestamps']
    seconds = (end - start).total_seconds() if start and end else None
    details = {}
    for name, attachment in test['details'].items():
        text = _text(attachment)
        if text is not None:
            details[name] = text
    return Outcome(test['id'], test['status'], seconds, details)


def read(stream, on_outcome):
    """Call on_outcome(Outcome) for each test in the subunit v2 byte
    stream as its end is read. Bytes that are not subunit (a runner's
    own output) are skipped."""
    def on_test(test):
        # 'exists' is a test listed before the run, not a result.
        if test['id'] is not None and test['status'] != 'exists':
            on_outcome(_outcome(test))
    result = testtools.StreamToDict(on_test)
    result.startTestRun()
    try:
        subunit.ByteStreamToStreamResult(
            stream, non_subunit_name='stdout').run(result)
    finally:
        result.stopTestRun()
