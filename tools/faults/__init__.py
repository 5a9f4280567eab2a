"""The faults suite's runner and report (``python -m tools.faults``,
``tox -e faults``): runs the stestr suite tests/faults and says, for
each test, what it did, how it ended and what it found."""
