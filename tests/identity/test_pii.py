"""Pseudonymization by value (:mod:`streams.identity.pii`): a corpus of real-world spellings of
emails and phones is detected and hashed whatever the field; ids, SKUs, times, prices, UUIDs,
short numbers and zip codes are left as sent."""

from __future__ import annotations

import pytest

from streams.identity.pii import (
    Pseudonymizer,
    canonical_email,
    canonical_phone,
    detect,
    is_hashed,
    keyed_hash,
)
from streams.model import Identifier

PEPPER = b"correct horse battery staple"
ps = Pseudonymizer(PEPPER)

EMAILS = {
    "Ann.Lee@Example.COM": "ann.lee@example.com",
    " ann.lee@example.com ": "ann.lee@example.com",
    "ann.lee+promo@example.co.uk": "ann.lee+promo@example.co.uk",
    "ann.lee%40example.com": "ann.lee@example.com",  # URL-encoded
    "ann.lee%2540example.com": "ann.lee@example.com",  # encoded twice
    "ann.lee@exämple.com": "ann.lee@exämple.com",  # IDN
    "ann.lee@xn--exmple-cua.com": "ann.lee@xn--exmple-cua.com",  # IDN, punycode
    "mailto:ann.lee@example.com": "ann.lee@example.com",
    "MAILTO:Ann.Lee%40Example.com?subject=Hi": "ann.lee@example.com",
    "o'brien@example.ie": "o'brien@example.ie",
}
PHONES = {
    "4155550123": "+14155550123",
    "14155550123": "+14155550123",
    "+1 (415) 555-0123": "+14155550123",
    "(415) 555-0123": "+14155550123",
    "415.555.0123": "+14155550123",
    "tel:+1-415-555-0123": "+14155550123",
    "020 7946 0958": "+442079460958",
    "(020) 7946 0958": "+442079460958",
    "+44 20 7946 0958": "+442079460958",
    "0049 30 1234567": "+49301234567",
    "+49 30 1234567": "+49301234567",
}
NOT_PII = [
    "order-12345",
    "ORD-2026-000123",
    "100234567",
    "SKU-AB-1234",
    "kettle",
    "2026-03-02T09:00:00Z",
    "2026-03-02",
    "20260302",
    "1772442000",  # epoch seconds
    "1772442000000",  # epoch ms
    "19.99",
    "1999.00",
    "3f2b6c1e-8d4a-4c1e-9a55-2f1f8f0c6a11",
    "42",
    "94107",
    "94107-1234",
    "SW1A 1AA",
    "1234567890",
    "12345678",
    "10.0.0.1",
    "user@localhost",
    "@ann_lee",
    "v1.2.3",
    "",
]


@pytest.mark.parametrize(("raw", "canon"), EMAILS.items())
def test_emails_in_every_spelling_are_found(raw: str, canon: str) -> None:
    assert canonical_email(raw) == canon
    assert detect(raw) == ("email", canon)


@pytest.mark.parametrize(("raw", "e164"), PHONES.items())
def test_phones_in_every_spelling_are_found(raw: str, e164: str) -> None:
    assert canonical_phone(raw) == e164
    assert detect(raw) == ("phone", e164)


@pytest.mark.parametrize("value", NOT_PII)
def test_ids_times_prices_and_codes_are_not_pii(value: str) -> None:
    assert detect(value) is None
    assert ps.value(value) is value


def test_one_person_has_one_stored_form_whatever_the_spelling_or_field() -> None:
    email = {ps.value(v) for v in EMAILS if canonical_email(v) == "ann.lee@example.com"}
    assert email == {keyed_hash(PEPPER, "email", "ann.lee@example.com")}
    phone = {ps.value(v) for v, e in PHONES.items() if e == "+14155550123"}
    assert len(phone) == 1 and is_hashed(phone.pop())
    # by type (intake normalized it) or by value (any other type): the same hash
    by_type = ps.identifier(Identifier("email", "ann.lee@example.com"))
    assert ps.identifier(Identifier("user_id", "Ann.Lee@Example.COM")).value == by_type.value
    assert ps.identifier(Identifier("email_address", "ann.lee%40example.com")).value == by_type.value
    assert ps.identifier(Identifier("mobile_phone", "+1 415 555 0123")) == Identifier(
        "mobile_phone", keyed_hash(PEPPER, "phone", "+14155550123")
    )
    assert ps.identifier(Identifier("anonymous_id", "anon-7f3")) == Identifier("anonymous_id", "anon-7f3")
    assert ps.identifier(by_type) == by_type, "hashing twice changes nothing"
    assert keyed_hash(b"another pepper", "email", "ann.lee@example.com") != by_type.value


def test_traits_are_hashed_by_value_nested_ones_included() -> None:
    traits = {
        "email": "ann.lee@example.com",  # the email identifier already: dropped
        "phone": "(415) 555-0123",
        "Email": "Ann.Lee@Example.COM",
        "mobile": "020 7946 0958",
        "contact": {"email": "mailto:ann.lee@example.com", "phones": ["4155550123", 14155550123]},
        "signature": "Ann Lee <ann.lee@example.com>",
        "name": "Ann",
        "plan": "gold",
        "orders": 12,
        "zip": "94107",
        "since": "2024-05-01T10:00:00Z",
    }
    out = ps.traits(traits)
    assert "email" not in out and "phone" not in out
    assert out["Email"] == keyed_hash(PEPPER, "email", "ann.lee@example.com")
    assert out["mobile"] == keyed_hash(PEPPER, "phone", "+442079460958")
    assert out["contact"]["email"] == out["Email"]
    assert out["contact"]["phones"][0] == out["contact"]["phones"][1] != "4155550123"
    assert is_hashed(out["signature"]), "a text holding an email is hashed whole"
    assert {k: out[k] for k in ("name", "plan", "orders", "zip", "since")} == {
        k: traits[k] for k in ("name", "plan", "orders", "zip", "since")
    }


def test_detection_is_cheap_for_values_that_are_not_phone_shaped() -> None:
    import timeit

    n = 2000
    per = timeit.timeit(lambda: [detect(v) for v in ("anon-3f2b6c1e", "kettle", "Web")], number=n) / n / 3
    assert per < 20e-6, f"{per * 1e6:.1f} us per value"
