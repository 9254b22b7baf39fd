"""Write tests/data/sources/{twilio,aircall}.json: the source adapters' recorded samples.

Each is a request as the vendor posts it, with fictional numbers (+1 212 555 01xx),
fabricated ids and obviously fake secrets. Twilio's signatures are computed by Twilio's
own Python library, so the tests check our reading of the scheme against Twilio's:
`pip install twilio` (not a dependency of callbridge), then
`python tools/gen_source_samples.py`. The output is the same on every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "tests" / "data" / "sources"


def twilio() -> dict[str, Any]:
    from twilio.request_validator import RequestValidator

    TOKEN = "twilio-test-auth-token-0000"
    OLD = "twilio-old-auth-token-0000"
    ACCOUNT = "AC" + "0" * 31 + "9"
    URL = "https://callbridge.example.com/v1/sources/acme/twilio"
    CALLER, FIRM = "+12125550142", "+12125550100"

    def call(sid, status, seq, stamp, direction="inbound", **extra):
        frm, to = (CALLER, FIRM) if direction == "inbound" else (FIRM, CALLER)
        p = {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "CallSid": sid, "CallStatus": status,
             "CallbackSource": "call-progress-events", "Called": to, "Caller": frm,
             "Direction": direction, "From": frm, "SequenceNumber": str(seq),
             "Timestamp": stamp, "To": to}
        p.update(extra)
        return p

    def msg(sid, status, direction="outbound", **extra):
        frm, to = (FIRM, CALLER) if direction == "outbound" else (CALLER, FIRM)
        p = {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "From": frm, "MessageSid": sid,
             "MessageStatus": status, "SmsSid": sid, "SmsStatus": status, "To": to}
        p.update(extra)
        return p

    def CA(n: int) -> str:
        return "CA" + "0" * 29 + f"{n:03d}"

    def SM(n: int) -> str:
        return "SM" + "0" * 29 + f"{n:03d}"
    samples = [
        ("inbound answered: ringing", call(CA(1), "ringing", 0, "Mon, 02 Mar 2026 15:00:00 +0000", CallerName="DANA WHITFIELD"),
         {"kind": "call", "id": CA(1), "state": "ringing", "sequence": 0}),
        ("inbound answered: in progress", call(CA(1), "in-progress", 1, "Mon, 02 Mar 2026 15:00:07 +0000", CallerName="DANA WHITFIELD"),
         {"kind": "call", "id": CA(1), "state": "in_progress", "sequence": 1}),
        ("inbound answered: completed", call(CA(1), "completed", 2, "Mon, 02 Mar 2026 15:03:12 +0000", CallerName="DANA WHITFIELD", CallDuration="185",
            RecordingUrl="https://api.twilio.com/2010-04-01/Accounts/" + ACCOUNT + "/Recordings/RE" + "0" * 31 + "1"),
         {"kind": "call", "id": CA(1), "state": "ended", "outcome": "completed", "sequence": 2}),
        ("inbound not answered", call(CA(2), "no-answer", 1, "Mon, 02 Mar 2026 15:10:30 +0000", CallDuration="0"),
         {"kind": "call", "id": CA(2), "state": "ended", "outcome": "missed", "sequence": 1}),
        ("inbound hung up before an answer", call(CA(3), "canceled", 1, "Mon, 02 Mar 2026 15:20:09 +0000", CallDuration="0"),
         {"kind": "call", "id": CA(3), "state": "ended", "outcome": "missed", "sequence": 1}),
        ("outbound busy", call(CA(4), "busy", 1, "Mon, 02 Mar 2026 16:00:04 +0000", direction="outbound-api", CallDuration="0"),
         {"kind": "call", "id": CA(4), "state": "ended", "outcome": "busy", "sequence": 1}),
        ("outbound failed", call(CA(5), "failed", 0, "Mon, 02 Mar 2026 16:05:00 +0000", direction="outbound-api"),
         {"kind": "call", "id": CA(5), "state": "ended", "outcome": "failed", "sequence": 0}),
        ("outbound dialled: initiated", call(CA(6), "initiated", 0, "Mon, 02 Mar 2026 16:30:00 +0000", direction="outbound-dial"),
         {"kind": "call", "id": CA(6), "state": "ringing", "sequence": 0}),
        ("outbound dialled: completed", call(CA(6), "completed", 3, "Mon, 02 Mar 2026 16:31:40 +0000", direction="outbound-dial", CallDuration="90"),
         {"kind": "call", "id": CA(6), "state": "ended", "outcome": "completed", "sequence": 3}),
        ("outgoing message: queued", msg(SM(1), "queued"),
         {"kind": "sms", "id": SM(1), "status": "pending"}),
        ("outgoing message: sent", msg(SM(1), "sent"),
         {"kind": "sms", "id": SM(1), "status": "sent"}),
        ("outgoing message: delivered", msg(SM(1), "delivered"),
         {"kind": "sms", "id": SM(1), "status": "delivered"}),
        ("outgoing message: undelivered", msg(SM(2), "undelivered", ErrorCode="30003"),
         {"kind": "sms", "id": SM(2), "status": "failed"}),
        ("incoming message", msg(SM(3), "received", direction="inbound", Body="Running ten minutes late, sorry.", NumMedia="0"),
         {"kind": "sms", "id": SM(3), "direction": "inbound"}),
    ]
    validator = RequestValidator(TOKEN)
    out = {"about": "Twilio status callbacks as Twilio posts them (fictional numbers, fabricated "
           "sids, a test auth token); each X-Twilio-Signature computed by Twilio's Python "
           "library (twilio 9.13.0, RequestValidator.compute_signature) with auth_token (sha256: with "
           "shared_key and HMAC_SHA256, as under a webhooks rule)",
           "auth_token": TOKEN, "old_auth_token": OLD, "account_sid": ACCOUNT, "url": URL,
           "requests": []}
    for name, params, expect in samples:
        body = urlencode(list(params.items()))
        sig = validator.compute_signature(URL, params)
        assert validator.validate(URL, params, sig)
        out["requests"].append({"name": name, "content_type": "application/x-www-form-urlencoded",
                                "body": body, "signature": sig, "expect": expect})
    # One signed with the token being rotated out.
    params = call(CA(7), "completed", 2, "Mon, 02 Mar 2026 17:00:00 +0000", CallDuration="30")
    out["rotated"] = {"name": "signed with the previous token", "body": urlencode(list(params.items())),
                      "signature": RequestValidator(OLD).compute_signature(URL, params),
                      "content_type": "application/x-www-form-urlencoded"}
    # One under a webhooks rule: HMAC-SHA256 with the rule's shared key.
    SHARED = "twilio-test-shared-key-0000"
    params = call(CA(8), "completed", 2, "Mon, 02 Mar 2026 17:30:00 +0000", CallDuration="42")
    out["sha256"] = {"name": "signed under a webhooks rule", "shared_key": SHARED,
                     "settings": "key=webhooks_sharedkey_test0000,algorithm=HMAC_SHA256",
                     "body": urlencode(list(params.items())),
                     "signature": RequestValidator(SHARED).compute_signature(URL, params, "HMAC_SHA256"),
                     "content_type": "application/x-www-form-urlencoded"}
    assert RequestValidator(SHARED).validate(URL, params, out["sha256"]["signature"], "HMAC_SHA256")
    return out


def aircall() -> dict[str, Any]:
    TOKEN = "aircall-test-webhook-token-0000"
    OLD = "aircall-old-webhook-token-0000"
    T0 = 1772463600  # 2026-03-02T15:00:00Z

    def user(n, email):
        return {"id": 900 + n, "direct_link": f"https://api.aircall.io/v1/users/{900 + n}",
                "name": "Ann Lee" if n == 1 else "Bob Stone", "email": email,
                "available": True, "availability_status": "available"}

    NUMBER = {"id": 4401, "direct_link": "https://api.aircall.io/v1/numbers/4401", "name": "Front desk",
              "digits": "+1 212-555-0100", "country": "US", "time_zone": "America/New_York",
              "open": True, "availability_status": "open", "is_ivr": False}
    CONTACT = {"id": 7701, "direct_link": "https://api.aircall.io/v1/contacts/7701", "first_name": "Dana",
               "last_name": "Whitfield", "company_name": "", "information": "", "is_shared": True,
               "emails": [], "phone_numbers": [{"id": 1, "label": "Work", "value": "+1 212-555-0142"}]}

    def call(cid, status, direction="inbound", started=T0, answered=None, ended=None, user_=None,
             voicemail=None, recording=None, missed=None, contact=CONTACT, digits="+1 212-555-0142"):
        return {"id": cid, "direct_link": f"https://api.aircall.io/v1/calls/{cid}",
                "direction": direction, "status": status, "missed_call_reason": missed,
                "started_at": started, "answered_at": answered, "ended_at": ended,
                "duration": (ended - started) if ended else 0, "voicemail": voicemail,
                "recording": recording, "asset": None, "raw_digits": digits, "user": user_,
                "contact": contact, "number": NUMBER, "archived": False, "assigned_to": None,
                "tags": [], "comments": [], "teams": []}

    def env(event, stamp, data, resource="call"):
        return {"resource": resource, "event": event, "timestamp": stamp, "token": TOKEN, "data": data}

    ann = user(1, "ann@acme.example")
    samples = [
        ("answered: created", env("call.created", T0, call(31001, "initial")),
         {"kind": "call", "id": "31001", "state": "ringing", "sequence": T0}),
        ("answered: ringing on an agent", env("call.ringing_on_agent", T0 + 2, call(31001, "initial", user_=ann)),
         {"kind": "call", "id": "31001", "state": "ringing", "sequence": T0 + 2}),
        ("answered: answered", env("call.answered", T0 + 8, call(31001, "answered", answered=T0 + 8, user_=ann)),
         {"kind": "call", "id": "31001", "state": "in_progress", "sequence": T0 + 8}),
        ("answered: hung up", env("call.hungup", T0 + 200, call(31001, "done", answered=T0 + 8, ended=T0 + 200, user_=ann)),
         {"kind": "call", "id": "31001", "state": "ended", "outcome": "completed", "sequence": T0 + 200}),
        ("answered: ended", env("call.ended", T0 + 231, call(31001, "done", answered=T0 + 8, ended=T0 + 200, user_=ann,
            recording="https://aircall-recordings.example.com/calls/31001.mp3")),
         {"kind": "call", "id": "31001", "state": "ended", "outcome": "completed", "sequence": T0 + 231}),
        ("missed", env("call.ended", T0 + 640, call(31002, "done", started=T0 + 580, ended=T0 + 610,
            missed="agents_did_not_answer", digits="+1 212-555-0177", contact=None)),
         {"kind": "call", "id": "31002", "state": "ended", "outcome": "missed", "sequence": T0 + 640}),
        ("voicemail", env("call.voicemail_left", T0 + 1290, call(31003, "done", started=T0 + 1200, ended=T0 + 1260,
            missed="no_available_agent", voicemail="https://aircall-voicemails.example.com/calls/31003.mp3")),
         {"kind": "call", "id": "31003", "state": "ended", "outcome": "voicemail", "sequence": T0 + 1290}),
        ("outbound answered", env("call.ended", T0 + 3700, call(31004, "done", direction="outbound", started=T0 + 3600,
            answered=T0 + 3610, ended=T0 + 3670, user_=user(2, "bob@acme.example"))),
         {"kind": "call", "id": "31004", "state": "ended", "outcome": "completed", "direction": "outbound"}),
        ("withheld caller", env("call.ended", T0 + 4030, call(31005, "done", started=T0 + 4000, ended=T0 + 4010,
            digits="anonymous", contact=None)),
         {"kind": "call", "id": "31005", "state": "ended", "outcome": "missed", "withheld": True}),
        ("another resource", env("user.opened", T0 + 5000, ann, resource="user"),
         None),
    ]
    out = {"about": "Aircall webhook events as Aircall posts them (fictional numbers and "
           "addresses, fabricated ids, a test webhook token)",
           "token": TOKEN, "old_token": OLD, "url": "https://callbridge.example.com/v1/sources/acme/aircall",
           "requests": [{"name": n, "content_type": "application/json", "body": json.dumps(b),
                         "expect": e} for n, b, e in samples]}
    rot = env("call.ended", T0 + 7000, call(31006, "done", started=T0 + 6900, ended=T0 + 6950))
    rot["token"] = OLD
    out["rotated"] = {"name": "sent by the webhook being replaced", "content_type": "application/json",
                      "body": json.dumps(rot)}
    return out


if __name__ == "__main__":
    for name, build in (("twilio", twilio), ("aircall", aircall)):
        (TARGET / f"{name}.json").write_text(json.dumps(build(), indent=1))
