"""Issue point 4: settings per tenant and per app, errors naming key and file, live reload."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from callbridge.errors import ConfigError
from callbridge.settings import EventType, SettingsSource, load_settings
from pydantic import BaseModel

GOOD = """
[tenants.acme]
time_zone = "America/New_York"
default_region = "US"
own_numbers = ["(212) 555-0100"]
extensions = { "101" = "ann@example.com" }

[tenants.acme.apps.clio]
contact_creation = ["missed", "incoming"]
exclusive_contact_association = true

[tenants.acme.apps.crm]
plugin = "notebook"
contact_creation = "all"
several_matches = "most_recent"
"""


class NotebookOptions(BaseModel):
    model_config = {"extra": "forbid"}
    base_url: str = "http://127.0.0.1:1"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callbridge.toml"
    path.write_text(text)
    return path


def test_each_app_of_a_tenant_has_its_own_settings(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    acme = settings.tenant("acme")
    assert acme.apps["clio"].contact_creation == {EventType.MISSED, EventType.INCOMING}
    assert acme.apps["clio"].exclusive_contact_association is True
    assert acme.apps["crm"].exclusive_contact_association is False  # the default is off
    assert acme.own_numbers == {"+12125550100"}


def test_all_means_every_type_but_fax_and_none_means_none(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD + '\n[tenants.acme.apps.other]\ncontact_creation = "none"\n'))
    apps = settings.tenant("acme").apps
    assert apps["crm"].contact_creation == {EventType.INCOMING, EventType.OUTGOING,
                                            EventType.MISSED, EventType.COMPLETED}
    assert apps["other"].contact_creation == frozenset()


def test_defaults_match_the_spec(tmp_path: Path) -> None:
    app = load_settings(write(tmp_path, GOOD)).tenant("acme").apps["crm"]
    assert app.matter_association and app.fax_logging and app.automatic_logging
    assert app.placeholder_name == "New callbridge Contact"
    assert app.default_billable is False


def test_unknown_key_is_an_error_naming_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "exclusive_contact_asociation = true\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "tenants.acme.apps.crm.exclusive_contact_asociation" in str(info.value)


@pytest.mark.parametrize(("line", "key"), [
    ('time_zone = "Mars/Olympus"', "time_zone"),
    ('default_region = "XX"', "default_region"),
    ('own_numbers = ["555-01"]', "own_numbers"),
])
def test_invalid_tenant_values_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    text = GOOD.replace('time_zone = "America/New_York"', "").replace(
        'default_region = "US"', "").replace('own_numbers = ["(212) 555-0100"]', "")
    text = text.replace("[tenants.acme]\n", f"[tenants.acme]\n{line}\n", 1)
    with pytest.raises(ConfigError, match=f"tenants.acme.{key}"):
        load_settings(write(tmp_path, text))


def test_plugin_options_are_validated_against_its_model(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '[tenants.acme.apps.crm.options]\nbase_urll = "x"\n')
    with pytest.raises(ConfigError, match=r"tenants.acme.apps.crm.options.base_urll"):
        load_settings(path, {"notebook": NotebookOptions})


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[tenants.acme\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_a_changed_file_applies_from_the_next_read(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    source = SettingsSource(path)
    assert source.current().tenant("acme").apps["clio"].exclusive_contact_association is True
    path.write_text(GOOD.replace("exclusive_contact_association = true", "exclusive_contact_association = false"))
    later = time.time() + 5
    os.utime(path, (later, later))
    assert source.current().tenant("acme").apps["clio"].exclusive_contact_association is False
