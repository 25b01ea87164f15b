"""pytest plugin for Tollgate's client-suite test (client_suites/psycopg2.rs).

Writes a JSON line to $TOLLGATE_SUITE_REPORT when each test starts and one with its outcome
when it ends, so a test that hangs (and is killed with the whole run by pytest-timeout's
thread method, the only one that can interrupt a wait inside libpq) is known by its id.
Deselects the tests listed in $TOLLGATE_SUITE_SKIP (finished or hung in an earlier pass, so a
later pass runs the rest), and each module's `test_suite()` (psycopg2's unittest entry point,
which pytest would collect as a test).
"""

import json
import os

_report = open(os.environ["TOLLGATE_SUITE_REPORT"], "a", buffering=1)
_results = {}


def _write(record):
    _report.write(json.dumps(record) + "\n")


def pytest_collection_modifyitems(config, items):
    skip = set()
    path = os.environ.get("TOLLGATE_SUITE_SKIP")
    if path and os.path.exists(path):
        with open(path) as listing:
            skip = {line.strip() for line in listing if line.strip()}
    keep, dropped = [], []
    for item in items:
        entry_point = item.name == "test_suite" and getattr(item, "cls", None) is None
        (dropped if entry_point or item.nodeid in skip else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_runtest_logstart(nodeid, location):
    _write({"event": "start", "id": nodeid})


def _message(report):
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    lines = text.strip().splitlines()
    return lines[0][:400] if lines else ""


def pytest_runtest_logreport(report):
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        else:
            outcome = report.outcome
    elif report.failed:
        outcome = "error"
    elif report.skipped:
        outcome = "skipped"
    else:
        return
    # The first outcome that is not a pass stands (a teardown error after a failure).
    if _results.get(report.nodeid, ("passed", ""))[0] == "passed":
        _results[report.nodeid] = (outcome, _message(report))


def pytest_runtest_logfinish(nodeid, location):
    outcome, message = _results.pop(nodeid, ("error", "no report"))
    _write({"event": "finish", "id": nodeid, "outcome": outcome, "message": message})
