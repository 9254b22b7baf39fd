"""The kit run as a plugin author runs it: green on the notebook, red where it must be.

Each test writes a small test module into a temporary folder and runs pytest
on it (pytester), then reads what the author would read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).parent / "kit_examples"
NOTEBOOK_CASSETTES = Path(__file__).parents[1] / "core" / "callbridge" / "examples" / "notebook" / "tests" / "cassettes"
FIX = ("re-record with CALLBRIDGE_RECORD_MODE=once so the kit's scrubber runs, "
       "or edit the value to a fictional one")
# A realistic 40-character token, made for this test; no vendor's prefix.
TOKEN = "q7Zt4KxW9mRb2LcV8nHs3JdF6gPy1TaE5uQo0XiN"


@pytest.fixture
def author(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A folder with the notebook's cassettes and the kit examples importable; replay only."""
    monkeypatch.delenv("CALLBRIDGE_RECORD_MODE", raising=False)
    pytester.syspathinsert(EXAMPLES)
    pytester.syspathinsert(EXAMPLES / "installed")
    shutil.copytree(NOTEBOOK_CASSETTES, pytester.path / "cassettes")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def suite_module(pytester: pytest.Pytester, plugin: str, extra: str = "") -> None:
    pytester.makepyfile(test_author=f"""
        from pathlib import Path

        import {plugin}
        from kit_support import suite_for

        TestAuthor = suite_for({plugin}, Path(__file__).parent / "cassettes"{extra})
    """)


def edit_cassette(path: Path, change: object) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data))


def test_the_suite_passes_on_the_notebook_plugin_with_its_cassettes(
        author: pytest.Pytester) -> None:
    suite_module(author, "callbridge_notebook")
    result = author.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=30, skipped=10)


def test_a_wrong_declaration_names_the_distribution_the_hook_and_the_fix(
        author: pytest.Pytester) -> None:
    suite_module(author, "callbridge_notebook_wrong")
    result = author.runpytest("-p", "no:cacheprovider", "-k", "declaration_matches")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*callbridge-notebook-wrong 0.3.1*declares sms but does not implement log_sms*",
        "*fix: implement log_sms (marked @hookimpl), or remove Capability.SMS from declare()*",
    ])


def test_hook_tests_of_a_plugin_the_host_would_refuse_fail_with_the_same_message(
        author: pytest.Pytester) -> None:
    suite_module(author, "callbridge_notebook_wrong")
    result = author.runpytest("-p", "no:cacheprovider", "-k", "log_call and not retry")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*callbridge-notebook-wrong 0.3.1*does not implement log_sms*"])


def test_an_undeclared_capability_is_skipped_naming_it(author: pytest.Pytester) -> None:
    suite_module(author, "callbridge_notebook_nofax")
    result = author.runpytest("-p", "no:cacheprovider", "-rs", "-k", "log_fax and not retry")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*notebook does not declare capability 'fax'*"])


def test_skipping_a_declared_capability_without_a_reason_fails(author: pytest.Pytester) -> None:
    suite_module(author, "callbridge_notebook", ', skip={"log_fax": " "}')
    result = author.runpytest("-p", "no:cacheprovider", "-k", "log_fax and not retry")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*has no reason: notebook declares 'fax'*give a written reason for skipping log_fax*"])


def test_skipping_a_declared_capability_with_a_reason_skips_it(author: pytest.Pytester) -> None:
    suite_module(author, "callbridge_notebook",
                 ', skip={"log_fax": "the sandbox has no fax endpoint yet"}')
    result = author.runpytest("-p", "no:cacheprovider", "-rs", "-k", "log_fax and not retry")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*log_fax: the sandbox has no fax endpoint yet*"])


def test_a_skip_entry_naming_nothing_known_fails(author: pytest.Pytester) -> None:
    suite_module(author, "callbridge_notebook", ', skip={"log_telex": "no telex"}')
    result = author.runpytest("-p", "no:cacheprovider", "-k", "skip_entries")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*skip names 'log_telex'*"])


def test_a_cassette_holding_a_bearer_token_fails_naming_file_interaction_masked_value_and_fix(
        author: pytest.Pytester) -> None:
    cassette = author.path / "cassettes" / "find_contact-found.yaml"

    def plant(data: dict) -> None:  # type: ignore[type-arg]
        data["interactions"][0]["request"]["headers"]["authorization"] = [f"Bearer {TOKEN}"]

    edit_cassette(cassette, plant)
    suite_module(author, "callbridge_notebook")
    result = author.runpytest("-p", "no:cacheprovider", "-k", "cassettes_hold")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*{cassette}: interaction 0 (GET /contacts), request header authorization: "
        f"bearer token Bearer q7Zt***; fix: {FIX}*",
    ])
    assert TOKEN not in result.stdout.str()
    assert TOKEN[4:12] not in result.stdout.str()


def test_a_cassette_holding_a_real_number_fails_naming_the_masked_number(
        author: pytest.Pytester) -> None:
    cassette = author.path / "cassettes" / "find_matters-one.yaml"

    def plant(data: dict) -> None:  # type: ignore[type-arg]
        body = data["interactions"][0]["response"]["body"]
        body["string"] = body["string"].replace('"status":"open"',
                                                '"status":"open","phone":"+13125557788"')

    edit_cassette(cassette, plant)
    suite_module(author, "callbridge_notebook")
    result = author.runpytest("-p", "no:cacheprovider", "-k", "cassettes_hold")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*{cassette}: interaction 0 (GET /contacts/c1/matters), response body: real phone "
        "number (outside the fictional ranges) +*******7788; fix:*",
    ])
    assert "3125557788" not in result.stdout.str()


def test_a_missing_recording_surfaces_as_a_cassette_miss_naming_the_request(
        author: pytest.Pytester) -> None:
    cassette = author.path / "cassettes" / "find_contact-found.yaml"
    cassette.unlink()
    suite_module(author, "callbridge_notebook")
    result = author.runpytest("-p", "no:cacheprovider", "-k", "find_contact_found")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*CassetteMiss: no recording for GET /contacts in {cassette} (the cassette file does "
        "not exist); record it with CALLBRIDGE_RECORD_MODE=once against the sandbox*",
    ])


def test_a_miss_the_plugin_swallows_still_surfaces_as_a_cassette_miss(
        author: pytest.Pytester) -> None:
    cassette = author.path / "cassettes" / "find_contact-not-found.yaml"
    cassette.unlink()
    suite_module(author, "callbridge_notebook_swallow")
    result = author.runpytest("-p", "no:cacheprovider", "-k", "find_contact_not_found")
    # The plugin returns [] for any error, which is what this test expects: only the
    # kit's re-raise turns the hidden miss into a failure.
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CassetteMiss: no recording for GET /contacts in*"])


def test_a_recorded_write_is_matched_on_its_body(author: pytest.Pytester) -> None:
    cassette = author.path / "cassettes" / "create_contact.yaml"

    def other_name(data: dict) -> None:  # type: ignore[type-arg]
        request = data["interactions"][0]["request"]
        request["body"] = request["body"].replace("New callbridge Contact", "Someone Else")

    edit_cassette(cassette, other_name)
    suite_module(author, "callbridge_notebook")
    result = author.runpytest("-p", "no:cacheprovider", "-k", "create_contact and not retry")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no recording for POST /contacts*"])


def test_an_unknown_record_mode_is_refused(author: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_RECORD_MODE", "sometimes")
    suite_module(author, "callbridge_notebook")
    result = author.runpytest("-p", "no:cacheprovider", "-k", "find_contact_found")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CALLBRIDGE_RECORD_MODE='sometimes' is not one of none, once*"])


def test_recording_from_an_empty_folder_writes_cassettes_that_replay(
        author: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.rmtree(author.path / "cassettes")
    suite_module(author, "callbridge_notebook")
    monkeypatch.setenv("CALLBRIDGE_RECORD_MODE", "once")
    author.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=30, skipped=10)
    recorded = yaml.safe_load((author.path / "cassettes" / "error-429.yaml").read_text())
    assert recorded["metadata"]["recorded"].startswith("recorded against the Notebook sandbox on ")
    assert recorded["interactions"][0]["request"]["uri"].startswith(
        "https://notebook.example.com/contacts?")
    assert recorded["interactions"][0]["response"]["status"]["code"] == 429
    monkeypatch.setenv("CALLBRIDGE_RECORD_MODE", "none")
    author.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=30, skipped=10)


def test_a_maintainer_can_record_against_the_real_app_with_a_credential(
        author: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from callbridge.faults import serve_in_thread
    from kit_support import notebook_contract  # type: ignore[import-not-found]

    shutil.rmtree(author.path / "cassettes")
    suite_module(author, "callbridge_notebook",
                 ', settings={"base_url": __import__("os").environ["APP_URL"], "auth": "bearer"}')
    monkeypatch.setenv("CALLBRIDGE_RECORD_MODE", "once")
    monkeypatch.setenv("CALLBRIDGE_RECORD_AGAINST", "app")
    monkeypatch.setenv("CALLBRIDGE_RECORD_CREDENTIAL", TOKEN)
    with serve_in_thread(notebook_contract().seeded_sandbox()) as url:
        monkeypatch.setenv("APP_URL", url)
        result = author.runpytest("-p", "no:cacheprovider", "-rs", "-k",
                                  "find_contact_found or rate_limited")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*error answers are recorded against the sandbox*"])
    text = (author.path / "cassettes" / "find_contact-found.yaml").read_text()
    assert TOKEN not in text and "Bearer SCRUBBED" in text
    assert "recorded against the Notebook app at 127.0.0.1 on " in text


async def test_the_kit_hands_a_fax_document_over_inline_and_refuses_a_link() -> None:
    from callbridge.events import FaxDocument
    from callbridge.testing.services import KitDocuments

    pdf = FaxDocument.model_validate({"content": "JVBERi0xLjQK", "filename": "a.pdf"})
    got = await KitDocuments().fetch(pdf)
    assert (got.content, got.content_type, got.filename) == (b"%PDF-1.4\n", "application/pdf",
                                                             "a.pdf")
    with pytest.raises(AssertionError, match="inline documents only"):
        await KitDocuments().fetch(FaxDocument.model_validate(
            {"url": "https://docs.example.com/fax.pdf"}))
