"""Timestamps from devices and feeds: every odd form becomes UTC with milliseconds, or a clear error."""
from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from stadtlink.adapters.core.timeutil import TimeFormatError, iso_ms, parse_time


@pytest.mark.parametrize("text,expected", [
    ("2020-02-12T15:15:45.789585559Z", "2020-02-12T15:15:45.789Z"),          # TTS nanoseconds
    ("2022-07-18T09:34:15.775023242+00:00", "2022-07-18T09:34:15.775Z"),     # ChirpStack
    ("2023-07-26T19:15:00+02:00", "2023-07-26T17:15:00.000Z"),               # PEGELONLINE summer time
    ("2024-01-10T10:00:00+01:00", "2024-01-10T09:00:00.000Z"),
    ("2024-01-10T10:00:00", "2024-01-10T10:00:00.000Z"),                     # naive: UTC by default
    ("2024-01-10T10:00:00.5Z", "2024-01-10T10:00:00.500Z"),
])
def test_forms(text, expected):
    assert iso_ms(parse_time(text)) == expected


def test_naive_can_be_refused_or_placed():
    with pytest.raises(TimeFormatError):
        parse_time("2024-01-10T10:00:00", naive_is=None)
    from datetime import timedelta
    assert iso_ms(parse_time("2024-01-10T10:00:00", naive_is=timezone(timedelta(hours=1)))) == "2024-01-10T09:00:00.000Z"


@pytest.mark.parametrize("bad", ["", "yesterday", "2024-13-01T00:00:00Z", "0001-01-01T00:00:00+01:00", None, 17])
def test_bad_input_is_a_time_format_error(bad):
    with pytest.raises(TimeFormatError):
        parse_time(bad)


@given(st.text(max_size=40))
def test_never_another_exception(text):
    try:
        parse_time(text)
    except TimeFormatError:
        pass


def test_iso_ms_refuses_naive():
    with pytest.raises(TimeFormatError):
        iso_ms(datetime(2024, 1, 1))
