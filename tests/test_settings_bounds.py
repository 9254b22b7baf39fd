"""Settings that would crash later are refused when read: each a configuration error
naming the file and the key, never echoing the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from callbridge.errors import ConfigError
from callbridge.settings import load_settings

TENANT = '[tenants.acme]\ntime_zone = "UTC"\n'


def refused(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "callbridge.toml"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(str(path))
    return message


@pytest.mark.parametrize(("text", "key"), [
    ("[ledger]\nlease_seconds = inf\n", "ledger.lease_seconds"),
    ("[ledger]\nlease_seconds = nan\n", "ledger.lease_seconds"),
    ("[ledger]\nlease_seconds = 1e12\n", "ledger.lease_seconds"),
    ("[ledger]\nmax_attempts = 99999999999\n", "ledger.max_attempts"),
    (TENANT + "retention_days = 999999999\n", "tenants.acme.retention_days"),
    ("[modes]\ndigest_every_minutes = inf\n", "modes.digest_every_minutes"),
    ("[quarantine]\nmax_entry_bytes = 0\n", "quarantine.max_entry_bytes"),
    (TENANT + '[tenants.acme.apps.crm]\ndelayed_logging_minutes = 1e300\n',
     "tenants.acme.apps.crm.delayed_logging_minutes"),
])
def test_unbounded_numbers_are_refused(tmp_path: Path, text: str, key: str) -> None:
    assert f"{key}:" in refused(tmp_path, text)


@pytest.mark.parametrize(("url", "why"), [
    ("not a url at all", "is not a database URL"),
    ("mysql://db.example.test/callbridge", "does not support"),
    ("postgresql+nosuchdriver://u:hunter2@db.example.test/cb", "driver"),
])
def test_a_bad_ledger_url_is_refused_without_echoing_it(tmp_path: Path, url: str, why: str) -> None:
    message = refused(tmp_path, f'[ledger]\nurl = "{url}"\n')
    assert "ledger.url:" in message and why in message
    assert "hunter2" not in message and "example.test" not in message


def test_a_postgresql_url_needs_its_driver_installed(tmp_path: Path) -> None:
    import re

    import sqlalchemy as sa

    try:
        sa.engine.make_url("postgresql://").get_dialect().import_dbapi()
        pytest.skip("the default PostgreSQL driver is installed here")
    except ImportError:
        pass
    message = refused(tmp_path, '[ledger]\nurl = "postgresql://u:pw@db.example.test/cb"\n')
    assert re.search(r"ledger.url: needs the \w+ driver, which is not installed", message)


def test_a_sqlite_url_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "callbridge.toml"
    path.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path / "x.db"}"\n')
    assert load_settings(path).ledger.url.startswith("sqlite:///")


def test_a_settings_file_that_is_not_utf8_is_a_configuration_error(tmp_path: Path) -> None:
    message = refused(tmp_path, TENANT.encode() + b'name = "caf\xe9"\n')
    assert "not UTF-8 text (at byte" in message


@pytest.mark.parametrize("key", ['"../../etc/passwd"', '""', '"a b"', '"x' + "y" * 100 + '"'])
def test_tenant_keys_follow_the_events_tenant_pattern(tmp_path: Path, key: str) -> None:
    message = refused(tmp_path, f'[tenants.{key}]\ntime_zone = "UTC"\n')
    assert "tenants: a key is not valid" in message
    assert "passwd" not in message


def test_an_app_key_follows_the_same_pattern(tmp_path: Path) -> None:
    message = refused(tmp_path, TENANT + '[tenants.acme.apps."cl io"]\n')
    assert "tenants.acme.apps: a key is not valid" in message


def test_the_event_tenant_pattern_and_the_settings_key_pattern_agree() -> None:
    from callbridge.events import TENANT_PATTERN
    from callbridge.settings import KEY_PATTERN

    assert TENANT_PATTERN == KEY_PATTERN
