"""Pseudonymization by value: what is stored when ``CXSTREAM_IDENTITY_PEPPER`` is set.

Called by intake (:class:`streams.pipeline.intake_stage.IntakeStage`) on every event before
anything is written, and by the CLI to turn a ``TYPE:VALUE`` reference into its stored form.
Nothing here raises on input: a value that is not personal comes back unchanged.

A value that *is* an email address or a phone number, whatever the field or identifier type
it arrives in (``userId``, ``previousId``, a trait called ``Email`` or ``mobile``, a nested
``contact.email``, an ``externalIds`` entry typed ``email_address``), is stored only as a
keyed hash: ``h:`` + the first 40 hex digits of HMAC-SHA256(pepper, ``"<kind>:<canonical>"``),
where kind is ``email`` (canonical: lower-case, ``mailto:`` and URL-encoding removed) or
``phone`` (canonical: E.164). The hash depends on the value, not on the field: one person's
email has one stored form everywhere (so ``userId`` = an email still links to an alias'
``previousId`` = the same email), and it is the form ``email`` / ``phone`` identifiers always had
(stored data stays valid). A trait string that merely *contains* an email address (``"Ann
<ann@example.com>"``) is hashed whole, as kind ``text``.

Detection, chosen for the hot path (every identifier and trait string of every event):

* emails: a strict regular expression (below), not ``email-validator``: that library answers
  "may I send to this?" (deliverability, RFC quirks; ~10-20 us a call and DNS if asked), we need
  "is this shaped like someone's address?", including invalid-but-personal ones, at ~1 us. A
  string without ``@`` (or ``%40``) costs one ``in`` test.
* phones: ``phonenumbers`` (Google's libphonenumber metadata), only for strings made of digits
  and separators with 7-15 digits (one regex), and only a *valid* number for one of the regions
  counts (``+``/``00`` international forms, else national forms of the default region and
  :data:`PHONE_REGIONS`), so order ids, zip codes, prices, dates and epoch times stay as sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, Final, Literal
from urllib.parse import unquote

import phonenumbers

from streams.model import Identifier, JSONDict

#: Prefix of every stored keyed hash. ``profile show``, ``profile export`` and the Profile API
#: recognise a hashed value by it.
HASH_PREFIX: Final = "h:"
#: Identifier types whose value is always hashed with a pepper (and normalized as such by intake).
HASHED_TYPES: Final = frozenset({"email", "phone"})
#: Trait names dropped with a pepper: intake took their value as the identifier of that name
#: (``Email``, ``mobile`` are not identifiers: they are kept, hashed by value).
IDENTIFIER_TRAITS: Final = frozenset({"email", "phone"})
#: National spellings recognised beside the default region's (``020 7946 0958``); the logs'
#: masking uses the same regions (:data:`streams.logs.PHONE_REGIONS`).
PHONE_REGIONS: Final = ("US", "GB")

Kind = Literal["email", "phone"]

#: local@domain.tld after canonicalization (lower-case, unquoted). Local part: RFC 5322 atom
#: characters and Unicode letters; domain: labels of letters, digits and inner hyphens (IDN
#: letters too, ``exämple.com``), a TLD of 2+ letters or punycode.
_EMAIL = re.compile(
    r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[a-z0-9-]{2,59})"
)
#: An email somewhere in a longer string (for traits that only contain one).
_EMAIL_IN = re.compile(r"[\w.%+'-]+(?:@|%(?:25)*40)[^\W_][\w-]*(?:\.[\w-]+)+")
#: Digits and the separators people write phone numbers with, and nothing else.
_PHONE_SHAPE = re.compile(r"(?:tel:)?\+?[\d\s().\-/]{7,24}")


def canonical_email(value: str) -> str | None:
    """``value`` as a canonical email address (lower-case, no ``mailto:``, unquoted), or ``None``."""
    v = value.strip()
    if "@" not in v and "%40" not in v and "%2540" not in v:
        return None
    if "%" in v:
        for _ in range(2):  # single and double URL-encoding
            v = unquote(v)
    v = v.lower()
    if v.startswith("mailto:"):
        v = v[7:].split("?", 1)[0]
    v = v.strip().strip("<>")
    return v if _EMAIL.fullmatch(v) else None


def canonical_phone(value: str, region: str = "US") -> str | None:
    """``value`` as an E.164 phone number if it is a valid one, or ``None``.

    International forms (``+44 20 7946 0958``, ``0049 30 1234567``) are read as such; national
    forms are tried for ``region`` then :data:`PHONE_REGIONS`."""
    v = value.strip()
    if not _PHONE_SHAPE.fullmatch(v):
        return None
    digits = sum(c.isdigit() for c in v)
    if not 7 <= digits <= 15:
        return None
    if v.startswith("tel:"):
        v = v[4:]
    # another region's national form counts only with its trunk prefix 0 (``020 7946 0958``):
    # without it, 10-digit ids and epoch seconds would read as numbers somewhere
    national0 = v.lstrip("(").startswith("0")
    regions = (region, *(r for r in PHONE_REGIONS if r != region and national0))
    for r in regions:
        try:
            num = phonenumbers.parse(v, r)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            return str(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))
        if v.startswith("+"):
            return None  # the region does not matter for an international form
    return None


def detect(value: str, region: str = "US") -> tuple[Kind, str] | None:
    """``("email", canonical)`` or ``("phone", e164)`` when ``value`` is one, else ``None``."""
    email = canonical_email(value)
    if email is not None:
        return "email", email
    phone = canonical_phone(value, region)
    return ("phone", phone) if phone is not None else None


def keyed_hash(pepper: bytes, kind: str, canonical: str) -> str:
    """The stored form: ``h:`` + 40 hex digits of HMAC-SHA256(pepper, ``kind:canonical``)."""
    digest = hmac.new(pepper, f"{kind}:{canonical}".encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:40]


def is_hashed(value: object) -> bool:
    """Is ``value`` a stored keyed hash (``h:`` + 40 hex digits)?"""
    return isinstance(value, str) and len(value) == 42 and value.startswith(HASH_PREFIX)


class Pseudonymizer:
    """The stored form of identifiers, traits and channels for one pepper and phone region."""

    def __init__(self, pepper: bytes, region: str = "US") -> None:
        self.pepper = pepper
        self.region = region

    def value(self, value: str) -> str:
        """``value`` itself, or its keyed hash when it is an email address or a phone number."""
        if is_hashed(value):
            return value
        found = detect(value, self.region)
        return value if found is None else keyed_hash(self.pepper, *found)

    def identifier(self, ident: Identifier) -> Identifier:
        """The stored form of a (normalized) identifier: ``email``/``phone`` always hashed, any
        other type hashed when its value is an email or a phone number."""
        if is_hashed(ident.value):
            return ident
        if ident.type in HASHED_TYPES:  # intake normalized it: lower-case email, E.164 phone
            canon = canonical_email(ident.value) if ident.type == "email" else None
            return Identifier(ident.type, keyed_hash(self.pepper, ident.type, canon or ident.value))
        return Identifier(ident.type, self.value(ident.value))

    def identifiers(self, ids: Sequence[Identifier]) -> tuple[Identifier, ...]:
        return tuple(dict.fromkeys(self.identifier(i) for i in ids))

    def traits(self, traits: JSONDict) -> JSONDict:
        """Traits without ``email``/``phone`` (identifiers already), every email or phone value
        (nested objects and lists included) replaced by its keyed hash."""
        return {k: self._any(v) for k, v in traits.items() if k not in IDENTIFIER_TRAITS}

    def _any(self, v: Any) -> Any:
        if isinstance(v, str):
            return self._text(v)
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 1_000_000:
            text = str(v)
            return v if detect(text, self.region) is None else self.value(text)
        if isinstance(v, dict):
            return {k: self._any(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self._any(x) for x in v]
        return v

    def _text(self, v: str) -> str:
        hashed = self.value(v)
        if hashed is not v:
            return hashed
        if ("@" in v or "%40" in v) and _EMAIL_IN.search(v):
            return keyed_hash(self.pepper, "text", v)
        return v
