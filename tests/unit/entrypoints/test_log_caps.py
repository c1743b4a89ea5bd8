"""Every value echoed into a log line is capped, with its original length said (issue #9)."""

from __future__ import annotations

import logging

from entrypoints.logs import MAX_LOGGED_VALUE, cap_long_values, cap_standard_library_records, capped


def test_short_text_is_kept_and_long_text_is_cut_with_its_length():
    assert capped("abc") == "abc"
    assert capped("x" * MAX_LOGGED_VALUE) == "x" * MAX_LOGGED_VALUE
    assert capped("y" * 5_000) == "y" * MAX_LOGGED_VALUE + "… (5,000 characters)"


def test_the_structlog_processor_caps_every_value_but_leaves_numbers_alone():
    event = cap_long_values(
        None,
        "error",
        {"event": "x", "reason": "r" * 1_000, "body": b"b" * 1_000, "args": ["a" * 300], "retries": 25, "ok": True},
    )
    assert event["reason"].endswith("… (1,000 characters)") and len(event["reason"]) < 2 * MAX_LOGGED_VALUE
    assert event["body"].endswith("… (1,000 characters)")
    assert event["args"].startswith("['aaa") and event["args"].endswith("characters)")
    assert (event["retries"], event["ok"], event["event"]) == (25, True, "x")


def test_standard_library_records_have_their_arguments_capped():
    saved = logging.getLogRecordFactory()
    try:
        cap_standard_library_records()
        cap_standard_library_records()  # once per process, however often it is asked
        record = logging.getLogger("dramatiq.worker").makeRecord(
            "dramatiq.worker", logging.INFO, __file__, 1, "Failed %s after %d tries", ("m" * 10_000, 3), None
        )
        message = record.getMessage()
        assert message.startswith("Failed mmm") and message.endswith("… (10,000 characters) after 3 tries")
    finally:
        logging.setLogRecordFactory(saved)
