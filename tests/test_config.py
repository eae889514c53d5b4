"""Settings are data (flagsvc/config.py); each one is documented in the README's table and
read from its FLAGSVC_* variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from flagsvc.config import SETTINGS, load_config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented(setting):
    assert f"`FLAGSVC_{setting.name}`" in README


def test_environment_overrides_defaults_and_tests_override_both():
    config = load_config(environ={"FLAGSVC_CACHE_SECONDS": "2.5", "FLAGSVC_METRICS": "no"})
    assert config["CACHE_SECONDS"] == 2.5 and config["METRICS"] is False
    assert config["DATABASE"] == "./flagsvc.db"
    config = load_config({"DATABASE": "x.db"}, environ={"FLAGSVC_DATABASE": "y.db"})
    assert config["DATABASE"] == "x.db"
