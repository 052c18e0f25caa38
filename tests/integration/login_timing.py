"""Timing of failed PLAIN logins (issue 11.12): whether an account exists
must not show in how long a wrong password takes to be refused.

Measured as a person with a stopwatch would, but robust on a loaded shared
machine: only the SASL exchange is timed (from <auth/> to <failure/>), on
streams that are already negotiated; samples of the two kinds alternate,
so that load changes hit both alike; medians, not means, are compared."""

import base64
import statistics
import time

from xmpptest import NS_SASL, RawClient


def _stream(server, domain):
    c = RawClient(server.port, domain=domain)
    c.open_stream()
    c.starttls()
    c.open_stream()
    return c


def _time_failure(c, user, password):
    msg = ("\0%s\0%s" % (user, password)).encode()
    t0 = time.perf_counter()
    c.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, base64.b64encode(msg).decode()))
    res = c._sasl_outcome()
    t = time.perf_counter() - t0
    assert not res.ok and res.condition == "not-authorized", res
    return t


def failure_times(server, existing, unknown, rounds=15, per_stream=2, domain="localhost"):
    """(wrong password of `existing`, any password of `unknown`) failure
    times in seconds, `rounds` of each, alternating; a new stream every
    per_stream rounds (2 attempts a round: below limits.auth_attempts)."""
    wrong, missing = [], []
    c = None
    for i in range(rounds):
        if i % per_stream == 0:
            if c:
                c.close()
            c = _stream(server, domain)
        pair = [(wrong, existing), (missing, unknown)]
        if i % 2:
            pair.reverse()  # neither kind always goes first
        for out, user in pair:
            out.append(_time_failure(c, user, "not-the-password-%d" % i))
    c.close()
    return wrong, missing


def assert_same_cost(wrong, missing, floor):
    """The medians are within a factor 1.6 of each other; `floor` (seconds)
    is the least a wrong password must cost for the comparison to mean
    anything (the hash's cost, well above socket noise)."""
    mw, mm = statistics.median(wrong), statistics.median(missing)
    assert mw >= floor, "a wrong password costs only %.1f ms: the hash is too cheap to compare" % (mw * 1000)
    ratio = mm / mw
    print("PLAIN failure medians: wrong password %.1f ms, unknown account %.1f ms (ratio %.2f)"
          % (mw * 1000, mm * 1000, ratio))
    assert 1 / 1.6 <= ratio <= 1.6, (
        "unknown user %.1f ms vs wrong password %.1f ms (medians; ratio %.2f): the timing tells "
        "whether the account exists" % (mm * 1000, mw * 1000, ratio))
