"""Schemathesis hooks for Airlock's API fuzz run (.ci/api-fuzz).

Keep generated requests inside what the run can observe: long-polls never wait (a fuzzer waiting
50 s per case finds nothing new), and visitor calls go to the session the run's token opens, so
the fuzzer reaches the body parsers behind the token check instead of stopping at 404.
"""

import os

import schemathesis

SESSION = os.environ["AIRLOCK_FUZZ_SESSION"]


@schemathesis.hook
def map_case(context, case):
    if isinstance(case.query, dict) and "wait" in case.query:
        case.query["wait"] = 0
    if isinstance(case.body, dict) and "wait" in case.body:
        case.body["wait"] = 0
    path = case.operation.path
    if path.startswith("/api/v1/sessions/{id}") and isinstance(case.path_parameters, dict):
        case.path_parameters["id"] = SESSION
    return case
