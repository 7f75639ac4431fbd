"""AOL_REAL_CONCURRENCY's system checks: a bad value stops every command, one the per-tick cap defeats is a warning."""

import pytest

from orchestration.checks import check_aol_settings


def ids(settings) -> list[str]:
    return [message.id for message in check_aol_settings()]


@pytest.mark.parametrize("value", [0, -2, 1.5, "four", 65])
def test_check__a_real_concurrency_that_is_not_a_whole_number_from_1_to_64_is_an_error(settings, value):
    settings.AOL_REAL_CONCURRENCY = value
    messages = check_aol_settings()
    [error] = [m for m in messages if "AOL_REAL_CONCURRENCY" in m.msg]
    assert error.id in ("orchestration.E001", "orchestration.E004") and error.is_serious()


def test_check__concurrency_above_the_per_tick_cap_is_a_warning_naming_both(settings):
    settings.AOL_REAL_CONCURRENCY, settings.AOL_MAX_ACTIONS_PER_TICK = 8, 3
    [warning] = [m for m in check_aol_settings() if m.id == "orchestration.W004"]
    assert not warning.is_serious()
    assert "AOL_REAL_CONCURRENCY=8" in warning.msg and "AOL_MAX_ACTIONS_PER_TICK=3" in warning.msg


def test_check__the_default_and_a_sane_concurrency_are_fine(settings):
    settings.AOL_MAX_ACTIONS_PER_TICK = 16
    for value in (1, 4, 16):
        settings.AOL_REAL_CONCURRENCY = value
        assert not [m for m in check_aol_settings() if "CONCURRENCY" in m.msg]
