"""`callbridge new-plugin NAME` writes a package whose tests pass at once.

The fast tests render the template and run the generated package's pytest with
this environment; the slow one builds callbridge's wheel, installs it with the
generated package in a fresh virtualenv, and runs the package's tests there, as
an outside author would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from callbridge.cli import app
from callbridge.errors import ConfigError
from callbridge.scaffold import names_for, render
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_LINES = 150  # the template's plugin module stays small enough to read at once


def _pytest(package: Path, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    return subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package,
                          env={**clean, **env}, capture_output=True, text=True, timeout=300)


def test_the_generated_package_passes_its_contract_suite_at_once(tmp_path: Path) -> None:
    package = tmp_path / "callbridge-acme-crm"
    render("acme_crm", package, title="Acme CRM")
    result = _pytest(package, PYTHONPATH=str(package / "src"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "15 passed, 22 skipped" in result.stdout
    assert "warning" not in result.stdout.lower(), result.stdout[-2000:]


def test_the_package_has_entry_points_a_sandbox_a_readme_and_cassettes(tmp_path: Path) -> None:
    written = {p.relative_to(tmp_path).as_posix() for p in render("acme", tmp_path)}
    assert {"pyproject.toml", "README.md", "src/callbridge_acme/__init__.py",
            "src/callbridge_acme/sandbox.py", "tests/test_contract.py",
            "tests/cassettes/log_call-retry.yaml"} <= written
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert 'acme = "callbridge_acme"' in pyproject
    assert 'acme = "callbridge_acme.sandbox:create_app"' in pyproject
    assert "CALLBRIDGE_RECORD_MODE=once" in (tmp_path / "README.md").read_text()
    assert "$" not in (tmp_path / "src/callbridge_acme/__init__.py").read_text()


@pytest.mark.parametrize("module", ["core/callbridge/templates/plugin/src/_module_/__init__.py.tmpl",
                                    "core/callbridge/examples/notebook/__init__.py"])
def test_the_template_and_the_example_plugin_modules_are_short(module: str) -> None:
    assert len((ROOT / module).read_text().splitlines()) < PLUGIN_LINES


@pytest.mark.parametrize("name", ["Acme", "1acme", "acme-crm", "", "a" * 41])
def test_a_bad_name_is_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(ConfigError, match="NAME: must be lower case letters"):
        names_for(name)


def test_a_folder_with_files_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        render("acme", tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_the_command_writes_the_package_and_says_what_next(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["new-plugin", "acme", "--dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "src" / "callbridge_acme" / "__init__.py").exists()
    assert "python -m pytest" in result.output


@pytest.mark.slow
def test_the_generated_package_passes_in_a_fresh_virtualenv_with_the_wheels(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=300)
    (wheel,) = wheels.glob("callbridge-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    package = tmp_path / "callbridge-acme"
    render("acme", package)
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    f"{wheel}[testing]", "-e", f"{package}[test]"], check=True, timeout=600)
    result = _pytest(package, python)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "15 passed, 22 skipped" in result.stdout


def test_a_plugin_without_pytest_asyncio_settings_gets_no_warning_from_it(tmp_path: Path) -> None:
    package = tmp_path / "callbridge-acme"
    render("acme", package)
    pyproject = package / "pyproject.toml"
    pyproject.write_text("\n".join(line for line in pyproject.read_text().splitlines()
                                   if "asyncio_default_fixture_loop_scope" not in line))
    result = _pytest(package, PYTHONPATH=str(package / "src"))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "asyncio_default_fixture_loop_scope" not in result.stdout + result.stderr
