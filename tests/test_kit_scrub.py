"""Scrubbing on record: fictional numbers of the same country, no credential, example.com."""

from __future__ import annotations

import gzip
import json

import phonenumbers
import pytest
from callbridge.testing.fictional import fictional_email, fictional_number, is_fictional
from callbridge.testing.scrub import Scrubber, scrub_text
from vcr.request import Request


def fake(e164: str) -> phonenumbers.PhoneNumber:
    return fictional_number(phonenumbers.parse(e164))


def e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_a_north_american_number_keeps_its_area_code_in_the_555_01xx_range() -> None:
    number = fake("+13128675309")
    assert e164(number).startswith("+1312")
    assert 5550100 <= number.national_number % 10_000_000 <= 5550199
    assert phonenumbers.is_valid_number(number)


def test_a_north_american_number_with_no_valid_fictional_form_moves_to_area_code_212() -> None:
    number = fake("+18005550000")  # toll-free numbers have no 555-01xx range that validates
    assert phonenumbers.is_valid_number(number)
    assert is_fictional(number)


def test_a_uk_number_becomes_a_london_drama_number() -> None:
    number = fake("+447911123456")
    assert e164(number).startswith("+442079460")
    assert phonenumbers.is_valid_number(number)


def test_an_australian_landline_becomes_02_5550() -> None:
    number = fake("+61298765432")
    assert e164(number).startswith("+6125550")
    assert phonenumbers.is_valid_number(number)


def test_an_australian_mobile_stays_a_mobile_in_the_0491_570_range() -> None:
    number = fake("+61412345678")
    assert e164(number) in {"+61491570006", "+61491570156", "+61491570157", "+61491570158",
                            "+61491570159"}
    assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


def test_the_same_number_always_becomes_the_same_fictional_number() -> None:
    assert fake("+13128675309") == fake("+13128675309")


def test_a_fictional_number_is_left_as_it_is() -> None:
    assert e164(fake("+12125550142")) == "+12125550142"
    assert e164(fake("+442079460123")) == "+442079460123"


def test_numbers_in_text_keep_their_written_form() -> None:
    text = scrub_text("Call (312) 867-5309 or +1 312 867 5309 or 3128675309.")
    national = phonenumbers.format_number(fake("+13128675309"),
                                          phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(fake("+13128675309"),
                                               phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    digits = "".join(ch for ch in national if ch.isdigit())
    assert text == f"Call {national} or {international} or {digits}."


def test_national_forms_are_read_in_the_given_region() -> None:
    assert scrub_text("020 7123 4567", region="GB").startswith("020 7946 0")


def test_dates_times_and_digests_are_not_numbers() -> None:
    text = "2026-01-05T15:00:00+00:00 cb1-e173903a85780716b01a21d91c5ea8dc 240"
    assert scrub_text(text) == text


def test_an_email_becomes_a_hash_at_example_com() -> None:
    assert scrub_text("write to jane.doe@lawfirm.com today") == \
        f"write to {fictional_email('jane.doe@lawfirm.com')} today"
    assert fictional_email("jane.doe@lawfirm.com").endswith("@example.com")


def test_an_address_at_an_example_domain_stays() -> None:
    assert scrub_text("ann@acme.example and bob@example.com") == \
        "ann@acme.example and bob@example.com"


def request(uri: str, body: bytes | None = None, **headers: str) -> Request:
    return Request("POST" if body else "GET", uri, body, headers)


def test_a_url_encoded_number_in_a_query_string_is_scrubbed() -> None:
    scrubbed = Scrubber().before_record_request(
        request("https://app.example.com/contacts?phone=%2B13128675309&limit=5"))
    assert scrubbed.uri == ("https://app.example.com/contacts?phone=%2B"
                            f"{e164(fake('+13128675309'))[1:]}&limit=5")


def test_a_number_in_a_path_is_scrubbed() -> None:
    scrubbed = Scrubber().before_record_request(
        request("https://app.example.com/contacts/by-phone/+13128675309"))
    assert scrubbed.uri == f"https://app.example.com/contacts/by-phone/{e164(fake('+13128675309'))}"


def test_tokens_in_a_query_string_are_scrubbed() -> None:
    scrubbed = Scrubber().before_record_request(request(
        "https://app.example.com/oauth/callback?code=sPl1tAuthC0de99&state=abc&access_token=tok123"))
    assert scrubbed.uri == ("https://app.example.com/oauth/callback?code=SCRUBBED&state=abc"
                            "&access_token=SCRUBBED")


def test_secrets_in_a_form_body_are_scrubbed() -> None:
    body = b"grant_type=refresh_token&refresh_token=r3fr3sh&client_secret=s3cr3t&client_id=abc"
    scrubbed = Scrubber().before_record_request(request(
        "https://app.example.com/oauth/token", body,
        **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert scrubbed.body == (b"grant_type=refresh_token&refresh_token=SCRUBBED"
                             b"&client_secret=SCRUBBED&client_id=abc")


def test_secrets_in_a_json_body_are_scrubbed_but_ordinary_codes_stay() -> None:
    body = json.dumps({"api_key": "k-123456", "nested": {"password": "hunter22"},
                       "code": "CALLBRIDGE", "phones": ["+13128675309"]}).encode()
    scrubbed = Scrubber().before_record_request(request(
        "https://app.example.com/things", body, **{"Content-Type": "application/json"}))
    assert json.loads(scrubbed.body) == {
        "api_key": "SCRUBBED", "nested": {"password": "SCRUBBED"}, "code": "CALLBRIDGE",
        "phones": [e164(fake("+13128675309"))]}


def test_credential_headers_are_scrubbed_keeping_the_scheme() -> None:
    scrubbed = Scrubber(secret_headers=["X-Firm-Key"]).before_record_request(request(
        "https://app.example.com/", None, Authorization="Bearer abc.def.ghi", Cookie="sid=1",
        **{"X-Firm-Key": "k-99", "Accept": "application/json"}))
    assert scrubbed.headers["Authorization"] == "Bearer SCRUBBED"
    assert scrubbed.headers["Cookie"] == "SCRUBBED"
    assert scrubbed.headers["X-Firm-Key"] == "SCRUBBED"
    assert scrubbed.headers["Accept"] == "application/json"


def test_the_live_request_is_not_changed_by_scrubbing() -> None:
    live = request("https://app.example.com/?phone=%2B13128675309", None, Authorization="Bearer x")
    Scrubber().before_record_request(live)
    assert live.uri.endswith("%2B13128675309")
    assert live.headers["Authorization"] == "Bearer x"


def response(body: bytes, **headers: str) -> dict[str, object]:
    return {"status": {"code": 200, "message": "OK"},
            "headers": {name: [value] for name, value in headers.items()},
            "body": {"string": body}}


def test_a_set_cookie_header_and_tokens_in_a_response_body_are_scrubbed() -> None:
    body = json.dumps({"access_token": "at-1234567890", "refresh_token": "rt-0987654321",
                       "expires_in": 3600}).encode()
    scrubbed = Scrubber().before_record_response(response(
        body, **{"Set-Cookie": "sid=abc123; HttpOnly", "Content-Type": "application/json",
                 "Content-Length": str(len(body))}))
    assert scrubbed["headers"]["Set-Cookie"] == ["SCRUBBED"]
    assert json.loads(scrubbed["body"]["string"]) == {
        "access_token": "SCRUBBED", "refresh_token": "SCRUBBED", "expires_in": 3600}
    assert scrubbed["headers"]["Content-Length"] == [str(len(scrubbed["body"]["string"]))]


def test_a_compressed_response_is_decoded_before_it_is_scrubbed() -> None:
    plain = json.dumps({"data": [{"phone": "+13128675309"}]}).encode()
    scrubbed = Scrubber().before_record_response(response(
        gzip.compress(plain), **{"Content-Encoding": "gzip", "Content-Type": "application/json"}))
    assert "Content-Encoding" not in scrubbed["headers"]
    assert json.loads(scrubbed["body"]["string"]) == {"data": [{"phone": e164(fake("+13128675309"))}]}


@pytest.mark.parametrize("document", [b"%PDF-1.7\n\xff\xfe binary", b"\x89PNG\r\n"])
def test_a_binary_body_is_left_as_it_is(document: bytes) -> None:
    scrubbed = Scrubber().before_record_response(
        response(document, **{"Content-Type": "application/pdf"}))
    assert scrubbed["body"]["string"] == document


def test_a_pre_signed_upload_url_loses_its_signature_in_uris_and_json_bodies() -> None:
    from callbridge.testing import Scrubber

    scrubber = Scrubber(region="US")
    url = "https://storage.example.com/u/1?X-Amz-Expires=600&X-Amz-Signature=f7c29bf66d707c38cad0"
    assert "f7c29bf66d707c38cad0" not in scrubber.uri(url)
    body = scrubber.json_value({"data": {"latest_document_version": {"put_url": url}}})
    assert "f7c29bf66d707c38cad0" not in str(body)
    assert scrubber.json_value({"put_url": url})["put_url"] == scrubber.uri(url)
