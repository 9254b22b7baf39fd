"""Many firms: one file per tenant in a directory, secrets in a secrets file, and a
reload that touches only the tenants whose files changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from callbridge.connections import credentials_from_env
from callbridge.errors import ConfigError
from callbridge.settings_source import SettingsSource, load_secrets_file, secret

MAIN = 'tenants_dir = "tenants"\nsecrets_file = "secrets.toml"\n'
FIRM = '''time_zone = "America/New_York"
[apps.crm]
plugin = "notebook"
credentials_env = "{env}"
'''


@pytest.fixture(autouse=True)
def _no_secrets_file() -> object:
    yield
    load_secrets_file(None)  # the process-wide secrets file of a test does not outlive it


def touch(path: Path, text: str) -> None:
    """Write ``text`` and move the file's time on, as an edit a second later would."""
    path.write_text(text)
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))


def setup(tmp_path: Path, firms: int = 3) -> Path:
    main = tmp_path / "callbridge.toml"
    main.write_text(MAIN)
    (tmp_path / "tenants").mkdir()
    for n in range(firms):
        (tmp_path / "tenants" / f"firm{n}.toml").write_text(FIRM.format(env=f"FIRM{n}"))
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('FIRM0_TOKEN = "token-zero"\n')
    secrets.chmod(0o600)
    return main


def test_each_file_in_the_directory_is_a_tenant_named_by_its_file(tmp_path: Path) -> None:
    source = SettingsSource(setup(tmp_path))
    settings = source.current()
    assert sorted(settings.tenants) == ["firm0", "firm1", "firm2"]
    assert settings.tenant("firm1").time_zone == "America/New_York"
    assert settings.tenant("firm1").apps["crm"].credentials_env == "FIRM1"


def test_a_refresh_replaces_only_the_changed_tenant_and_keeps_the_others_objects(
        tmp_path: Path) -> None:
    source = SettingsSource(setup(tmp_path), watch=False)
    before = source.current()
    touch(tmp_path / "tenants" / "firm1.toml", FIRM.format(env="FIRM1") + 'enabled = false\n')
    (tmp_path / "tenants" / "firm2.toml").unlink()
    (tmp_path / "tenants" / "firm3.toml").write_text(FIRM.format(env="FIRM3"))
    assert source.current() is before  # nothing read until refresh() (the server's, off its loop)
    done = source.refresh()
    after = source.current()
    assert done.tenants == {"firm1", "firm2", "firm3"} and not done.whole
    assert after.tenant("firm0") is before.tenant("firm0")  # its connection is kept
    assert after.tenant("firm1").apps["crm"].enabled is False
    assert sorted(after.tenants) == ["firm0", "firm1", "firm3"]
    assert source.refresh().tenants == set()  # nothing changed since


def test_a_main_file_change_keeps_every_unchanged_tenant_object(tmp_path: Path) -> None:
    main = setup(tmp_path)
    source = SettingsSource(main, watch=False)
    before = source.current()
    touch(main, MAIN + "[modes]\ndigest_every_minutes = 30\n")
    done = source.refresh()
    assert done.whole and done.tenants == set()
    after = source.current()
    assert after.modes.digest_every_minutes == 30
    assert all(after.tenant(k) is before.tenant(k) for k in before.tenants)


def test_a_bad_tenant_file_is_named_and_the_settings_in_use_stay(tmp_path: Path) -> None:
    source = SettingsSource(setup(tmp_path), watch=False)
    before = source.current()
    bad = tmp_path / "tenants" / "firm1.toml"
    touch(bad, 'time_zone = "Nowhere/Land"\n')
    with pytest.raises(ConfigError) as caught:
        source.refresh()
    assert str(bad) in str(caught.value)
    assert "tenants.firm1.time_zone: is not an IANA time zone name" in str(caught.value)
    assert source.current() is before


def test_a_tenant_in_the_main_file_and_in_the_directory_is_refused(tmp_path: Path) -> None:
    main = setup(tmp_path)
    main.write_text(MAIN + "[tenants.firm0]\n")
    with pytest.raises(ConfigError, match="tenant 'firm0' is also in"):
        SettingsSource(main)


def test_a_file_name_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    main = setup(tmp_path)
    (tmp_path / "tenants" / "two words.toml").write_text("")
    with pytest.raises(ConfigError, match="a tenant file's name must be its key"):
        SettingsSource(main)


def test_secrets_come_from_the_secrets_file_when_the_environment_has_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SettingsSource(setup(tmp_path))
    app = source.current().tenant("firm0").apps["crm"]
    monkeypatch.delenv("FIRM0_TOKEN", raising=False)
    assert credentials_from_env(app).token == "token-zero"
    monkeypatch.setenv("FIRM0_TOKEN", "from-the-environment")
    assert secret("FIRM0", "token") == "from-the-environment"  # the environment wins


def test_a_secrets_file_others_may_read_is_refused_without_its_content(tmp_path: Path) -> None:
    main = setup(tmp_path)
    (tmp_path / "secrets.toml").chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        SettingsSource(main)
    assert "chmod 600" in str(caught.value) and "token-zero" not in str(caught.value)


def test_a_secret_that_is_not_text_is_named_by_its_variable_only(tmp_path: Path) -> None:
    main = setup(tmp_path)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('FIRM0_TOKEN = 12345\n')
    with pytest.raises(ConfigError) as caught:
        SettingsSource(main)
    assert "FIRM0_TOKEN: each value must be a string" in str(caught.value)
    assert "12345" not in str(caught.value)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLBRIDGE_PLUGINS": "notebook", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "callbridge", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_the_tenants_command_adds_changes_and_removes_a_checked_tenant_file(tmp_path: Path) -> None:
    main = setup(tmp_path, firms=1)
    new = tmp_path / "new.toml"
    new.write_text(FIRM.format(env="FIRM9"))
    added = cli("tenants", "add", "firm9", str(new), "-c", str(main), cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    again = cli("tenants", "add", "firm9", str(new), "-c", str(main), cwd=tmp_path)
    assert again.returncode == 1 and "--replace" in again.stderr
    new.write_text('time_zone = "Nowhere/Land"\n')
    refused = cli("tenants", "add", "firm9", str(new), "--replace", "-c", str(main), cwd=tmp_path)
    assert refused.returncode == 2 and "tenants.firm9.time_zone" in refused.stderr
    listed = json.loads(cli("tenants", "list", "--json", "-c", str(main), cwd=tmp_path).stdout)
    assert [(r["tenant"], r["apps"]) for r in listed] == [("firm0", ["crm"]), ("firm9", ["crm"])]
    assert cli("tenants", "remove", "firm9", "-c", str(main), cwd=tmp_path).returncode == 0
    assert not (tmp_path / "tenants" / "firm9.toml").exists()
    assert list((tmp_path / "tenants").glob(".*")) == []  # no half-written file left


def test_a_sources_signing_key_and_an_operators_token_may_be_in_the_secrets_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from callbridge.serve.auth import authenticate, token_hash
    from callbridge.serve.intake import secrets_of
    from callbridge.settings_serve import OperatorSettings, SourceSettings

    main = setup(tmp_path)
    (tmp_path / "secrets.toml").write_text('PBX_KEY = "k-1"\nOPS_TOKEN = "op-1"\n')
    monkeypatch.delenv("PBX_KEY", raising=False)
    monkeypatch.delenv("OPS_TOKEN", raising=False)
    SettingsSource(main)
    assert secrets_of(SourceSettings(secret_env="PBX_KEY")) == ["k-1"]
    operator = authenticate({"ops": OperatorSettings(token_env="OPS_TOKEN", tenants="all")},
                            "Bearer op-1")
    assert operator.name == "ops" and token_hash("op-1") != "op-1"
