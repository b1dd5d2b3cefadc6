"""Generate the bundled demo data set: about 300 people's journeys as Segment Spec calls.

Run ``python -m streams.demo.generate`` to rewrite ``streams/demo/journeys.jsonl``.
Standard library only, and deterministic: ``random.Random(seed)`` drives every choice,
so the same seed gives a byte-identical file.

Who is in it (see ``docs/domain.md`` for the journeys and ``contract.md`` section 9 for
the triggers they exercise):

- Retail (about half): anonymous web browsing, sign-in (identify with email and consent),
  carts that convert within 30 minutes on the same channel, carts that are abandoned
  (some bought later), carts that convert on another channel once identity is linked
  (web or app cart, then a point-of-sale order with the loyalty card the app account
  linked), in-store shoppers whose loyalty record is linked to an app account later,
  customers who go quiet for 50-90 days after a purchase and some who come back sooner,
  and anonymous browsers who never sign in.
- Financial services (20%): loan eligibility checked 1, 2, 3 or more times, some three
  times within 7 days, some spread over 10+ days, a few twice a few weeks apart, and a
  few who withdraw marketing consent between their checks.
- Automotive (20%): configurator views (the same configuration three times within 14
  days for some), email leads, test drives, the dealer CRM record (its own ``crm_id``,
  the same email), purchases, and six months of silence after a test drive.
- Insurance (10%): policy onboarding, some finishing, some dropping off at a step, some
  resuming days later.

Identity is consistent on purpose: a person's web cookie, app install, ``userId``, email,
loyalty card and CRM record are tied together only by calls that carry two of them at
once (an identify, a logged-in event), so identity resolution can link them, and no
two people ever share an identifier. Per person there is at most one ``userId``, one
``loyalty_id`` and one ``crm_id``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.demo import DEMO_FILE

Event = dict[str, Any]

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
START = datetime(2026, 1, 5, tzinfo=UTC)
END = datetime(2026, 9, 30, 23, 59, 59, 999000, tzinfo=UTC)
START_MS = (START - _EPOCH) // timedelta(milliseconds=1)
END_MS = (END - _EPOCH) // timedelta(milliseconds=1)
#: Day index (0 = 2026-01-05) of 2026-09-30, the last day with events.
LAST_DAY = (END_MS - START_MS) // DAY

CHANNELS = ("web", "app", "email", "pos", "crm", "call_center")
CONSENT_EVENT = "Segment Consent Preference Updated"

COUNTRY_WEIGHTS: dict[str, tuple[tuple[str, int], ...]] = {
    "retail": (("US", 55), ("DE", 12), ("GB", 12), ("FR", 9), ("NL", 6), ("ES", 6)),
    "financial": (("US", 45), ("DE", 15), ("GB", 15), ("FR", 10), ("NL", 8), ("ES", 7)),
    "automotive": (("US", 60), ("DE", 15), ("GB", 15), ("FR", 10)),
    "insurance": (("US", 60), ("GB", 15), ("DE", 15), ("NL", 10)),
}
#: Standard-time UTC offsets, enough to put sessions at plausible local hours.
UTC_OFFSET = {"US": -5, "GB": 0, "DE": 1, "FR": 1, "NL": 1, "ES": 1}
CURRENCY = {"US": "USD", "GB": "GBP"}
PRICE_FACTOR = {"USD": 1.0, "EUR": 0.95, "GBP": 0.82}

FIRST_NAMES = {
    "US": (
        "James", "Michael", "Robert", "William", "David", "Joseph", "Thomas", "Christopher", "Daniel",
        "Matthew", "Anthony", "Andrew", "Joshua", "Kevin", "Brian", "Mary", "Jennifer", "Linda",
        "Elizabeth", "Patricia", "Susan", "Jessica", "Sarah", "Karen", "Emily", "Ashley", "Olivia",
        "Sophia", "Madison", "Grace", "Maya", "Aaliyah", "Luis", "Carlos", "Priya", "Wei", "Katherine",
        "Margaret", "Alexander", "Rosa",
    ),
    "DE": (
        "Lukas", "Leon", "Jonas", "Finn", "Felix", "Maximilian", "Paul", "Elias", "Anna", "Lena",
        "Leonie", "Marie", "Sophie", "Laura", "Hannah", "Jürgen", "Katrin", "Sabine", "Stefan", "Björn",
    ),
    "FR": (
        "Lucas", "Hugo", "Louis", "Jules", "Gabriel", "Arthur", "Léa", "Chloé", "Manon", "Camille",
        "Inès", "Zoé", "Élodie", "Thomas", "Mathilde", "Antoine",
    ),
    "GB": (
        "Oliver", "George", "Harry", "Jack", "Charlie", "Alfie", "Amelia", "Isla", "Ava", "Mia",
        "Poppy", "Freya", "Emily", "Charlotte", "Hamish", "Siobhan",
    ),
    "NL": ("Daan", "Sem", "Lars", "Bram", "Noah", "Emma", "Julia", "Tess", "Sanne", "Fleur", "Joost", "Mees"),
    "ES": (
        "Hugo", "Martín", "Lucía", "Sofía", "Alejandro", "Pablo", "Carmen", "María", "Javier", "Elena",
        "Diego", "Paula",
    ),
}  # fmt: skip
LAST_NAMES = {
    "US": (
        "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
        "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson",
        "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker",
        "Young", "Allen", "King", "Wright", "Scott", "Nguyen", "Patel", "Kim", "Chen",
    ),
    "DE": (
        "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
        "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Braun", "Zimmermann",
    ),
    "FR": (
        "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
        "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garnier", "Faure",
    ),
    "GB": (
        "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Evans",
        "Thomas", "Roberts", "Walker", "Wright", "Hughes", "Edwards", "Green", "Patel", "O'Brien",
    ),
    "NL": (
        "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser", "Smit",
        "Meijer", "Mulder", "de Boer",
    ),
    "ES": (
        "García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez",
        "Gómez", "Jiménez", "Ruiz",
    ),
}  # fmt: skip
#: Names people go by on a loyalty card, so one customer appears under two names and emails.
NICKNAMES = {
    "Michael": "Mike", "Robert": "Bob", "William": "Bill", "Elizabeth": "Liz", "Katherine": "Kate",
    "Jennifer": "Jen", "Thomas": "Tom", "Alexander": "Alex", "Christopher": "Chris", "Margaret": "Maggie",
    "Daniel": "Dan", "Joseph": "Joe", "Matthew": "Matt", "Anthony": "Tony", "Maximilian": "Max",
    "Charlotte": "Lottie", "Alejandro": "Álex", "Patricia": "Patty", "Andrew": "Andy", "Joshua": "Josh",
}  # fmt: skip
EMAIL_DOMAINS = (("example.com", 70), ("example.org", 15), ("example.net", 15))
US_AREA_CODES = ("212", "312", "415", "617", "206", "512", "303", "404", "305", "702")

# --------------------------------------------------------------------------- retail catalog
SHOP = "https://shop.example.com"
#: product_id, sku, name, category, base price (USD)
PRODUCTS: tuple[tuple[str, str, str, str, float], ...] = (
    ("p-1001", "NW-TEE-ORG-BLK", "Organic Cotton T-Shirt", "Apparel", 24.0),
    ("p-1002", "NW-HOOD-GRY", "Heavyweight Hoodie", "Apparel", 59.0),
    ("p-1003", "NW-JEAN-SLM-34", "Slim Selvedge Jeans", "Apparel", 89.0),
    ("p-1004", "NW-JKT-RAIN", "Packable Rain Jacket", "Outdoor", 119.0),
    ("p-1005", "NW-BOOT-HIK-42", "Waterproof Hiking Boots", "Footwear", 149.0),
    ("p-1006", "NW-SNK-RUN-41", "Everyday Running Shoes", "Footwear", 99.0),
    ("p-1007", "NW-MUG-CER-2P", "Stoneware Mug, Set of 2", "Kitchen", 22.0),
    ("p-1008", "NW-PAN-CI-26", "Cast Iron Skillet 26 cm", "Kitchen", 45.0),
    ("p-1009", "NW-KNF-CHF-20", "Chef's Knife 20 cm", "Kitchen", 79.0),
    ("p-1010", "NW-TWL-BTH-4P", "Cotton Bath Towels, Set of 4", "Home", 39.0),
    ("p-1011", "NW-LMP-DSK-OAK", "Oak Desk Lamp", "Home", 65.0),
    ("p-1012", "NW-THR-WOOL", "Merino Wool Throw", "Home", 110.0),
    ("p-1013", "NW-CDL-CDR", "Cedar & Sage Candle", "Home", 18.0),
    ("p-1014", "NW-BTL-STL-750", "Insulated Steel Bottle 750 ml", "Outdoor", 29.0),
    ("p-1015", "NW-TNT-2P", "Two-Person Trail Tent", "Outdoor", 229.0),
    ("p-1016", "NW-BAG-DAY-20", "20 L Daypack", "Outdoor", 74.0),
    ("p-1017", "NW-SRM-VITC", "Vitamin C Serum 30 ml", "Beauty", 32.0),
    ("p-1018", "NW-LIP-BLM-3P", "Lip Balm Trio", "Beauty", 12.0),
    ("p-1019", "NW-EAR-BT-WHT", "Wireless Earbuds", "Electronics", 129.0),
    ("p-1020", "NW-CHG-USBC-65", "65 W USB-C Charger", "Electronics", 39.0),
    ("p-1021", "NW-SPK-BT-MINI", "Mini Bluetooth Speaker", "Electronics", 49.0),
    ("p-1022", "NW-SCK-MER-3P", "Merino Socks, 3 Pairs", "Apparel", 27.0),
    ("p-1023", "NW-CAP-CNV-OLV", "Canvas Cap", "Apparel", 25.0),
    ("p-1024", "NW-PLT-STN-4P", "Stoneware Dinner Plates, Set of 4", "Kitchen", 54.0),
)
STORES = ("store-012", "store-027", "store-031", "store-044", "store-058")

# --------------------------------------------------------------------------- other catalogs
LOAN_PRODUCTS: dict[str, tuple[int, int, int, tuple[int, ...]]] = {
    # product: (min amount, max amount, step, terms in months)
    "personal_loan": (2000, 40000, 500, (12, 24, 36, 48, 60)),
    "auto_loan": (8000, 60000, 1000, (36, 48, 60, 72)),
    "mortgage": (150000, 900000, 5000, (180, 240, 300, 360)),
}
BANK = "https://bank.example.com"

CAR_MODELS: dict[str, tuple[tuple[str, int], ...]] = {
    "Aria": (("Core", 27900), ("Sport", 31400), ("Premium", 35800)),
    "Kestrel EV": (("Standard Range", 41900), ("Long Range", 47500), ("Performance", 55900)),
    "Terra": (("Trail", 38200), ("Touring", 42600), ("Summit", 49900)),
    "Vanta": (("Base", 52900), ("GT", 64900)),
}
CAR_COLORS = ("Glacier White", "Graphite", "Deep Blue", "Ember Red", "Forest Green")
DEALERS = {
    "US": ("dlr-1042", "dlr-1107", "dlr-1188"),
    "DE": ("dlr-4012", "dlr-4035"),
    "GB": ("dlr-4410", "dlr-4423"),
    "FR": ("dlr-3301", "dlr-3319"),
}
MOTORS = "https://motors.example.com"

POLICY_STEPS: dict[str, tuple[str, ...]] = {
    "auto_policy": ("personal_details", "vehicle", "coverage", "quote", "payment"),
    "home_policy": ("personal_details", "property", "coverage", "quote", "payment"),
    "renters_policy": ("personal_details", "belongings", "coverage", "payment"),
}
INSURER = "https://insure.example.com"

# --------------------------------------------------------------------------- the cast
#: (industry, journey kind, people)
CAST: tuple[tuple[str, str, int], ...] = (
    ("retail", "web_order", 34),
    ("retail", "app_order", 16),
    ("retail", "abandon", 34),
    ("retail", "xchannel_pos", 16),
    ("retail", "xchannel_web_app", 12),
    ("retail", "pos_first", 16),
    ("retail", "anon", 22),
    ("financial", "one", 12),
    ("financial", "two", 10),
    ("financial", "triple", 12),
    ("financial", "burst", 6),
    ("financial", "spread", 10),
    ("financial", "twice", 4),
    ("financial", "withdraw", 6),
    ("automotive", "td_silent", 8),
    ("automotive", "td_buy", 7),
    ("automotive", "td_return", 7),
    ("automotive", "lead_only", 8),
    ("automotive", "spread_views", 8),
    ("automotive", "browse", 12),
    ("automotive", "walk_in", 10),
    ("insurance", "finish", 11),
    ("insurance", "drop", 12),
    ("insurance", "resume", 7),
)


#: How many people the demo follows.
PEOPLE = sum(n for _, _, n in CAST)
DESCRIPTION = "Write the cxstream demo data set (Segment Spec calls, one JSON object a line)."


def iso(ms: int) -> str:
    """Epoch ms -> ISO 8601 UTC with millisecond precision and ``Z``."""
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ascii(s: str) -> str:
    folded = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


@dataclass
class Person:
    """One customer and every identifier they show on some channel."""

    industry: str
    kind: str
    first: str
    last: str
    country: str
    email: str
    phone: str | None
    web_anon: str
    consent: dict[str, bool]
    user_id: str | None = None
    app_anon: str | None = None
    device_id: str | None = None
    device_type: str = "ios"
    loyalty_id: str | None = None
    loyalty_email: str | None = None
    loyalty_name: str | None = None
    pos_token: str | None = None
    crm_id: str | None = None
    web_in: bool = False  # logged in on the web: web calls carry the userId
    app_in: bool = False
    last_ts: int = 0
    bought: int = 0
    store: str = STORES[0]

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def currency(self) -> str:
        return CURRENCY.get(self.country, "EUR")


@dataclass
class _Demo:
    seed: int
    rng: random.Random = field(init=False)
    out: list[Event] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # ------------------------------------------------------------------ identifiers
    def _unique(self, make: Callable[[], str]) -> str:
        while True:
            value = make()
            if value not in self.used:
                self.used.add(value)
                return value

    def _uuid(self) -> str:
        return self._unique(lambda: str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))

    def _digits(self, prefix: str, n: int) -> str:
        return self._unique(lambda: prefix + "".join(self.rng.choice("0123456789") for _ in range(n)))

    def _hex(self, prefix: str, n: int) -> str:
        return self._unique(lambda: prefix + f"{self.rng.getrandbits(4 * n):0{n}x}")

    def _user_id(self) -> str:
        return self._unique(
            lambda: "usr_" + "".join(self.rng.choices("abcdefghjkmnpqrstuvwxyz23456789", k=10))
        )

    def _email(self, local: str) -> str:
        domain = self._weighted(EMAIL_DOMAINS)
        n = 1
        while True:
            email = f"{local}{n if n > 1 else ''}@{domain}"
            if email not in self.used:
                self.used.add(email)
                return email
            n += 1

    def _phone(self, country: str) -> str | None:
        r = self.rng
        if country == "US":
            return self._unique(lambda: f"+1{r.choice(US_AREA_CODES)}55501{r.randrange(100):02d}")
        if country == "DE":
            return self._unique(lambda: f"+4930555{r.randrange(10000):04d}")
        if country == "GB":
            return self._unique(lambda: f"+4420794600{r.randrange(100):02d}")
        if country == "FR":
            return self._unique(lambda: f"+3319900{r.randrange(10000):04d}")
        return None  # no reserved fictional range we trust: NL and ES customers give no phone

    def _weighted(self, options: Sequence[tuple[str, int]]) -> str:
        return self.rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]

    def _consent(self, country: str, industry: str) -> dict[str, bool]:
        r = self.rng
        eu = country != "US"
        marketing = r.random() < (0.65 if eu else 0.88)
        advertising = marketing and r.random() < (0.55 if eu else 0.8)
        if industry == "financial":
            advertising = advertising and r.random() < 0.6
        return {
            "marketing": marketing,
            "advertising": advertising,
            "personalization": True,
            "analytics": True,
        }

    def person(self, industry: str, kind: str) -> Person:
        r = self.rng
        country = self._weighted(COUNTRY_WEIGHTS[industry])
        first = r.choice(FIRST_NAMES[country])
        last = r.choice(LAST_NAMES[country])
        p = Person(
            industry=industry,
            kind=kind,
            first=first,
            last=last,
            country=country,
            email=self._email(f"{_ascii(first)}.{_ascii(last)}"),
            phone=self._phone(country) if r.random() < 0.7 else None,
            web_anon=self._uuid(),
            consent=self._consent(country, industry),
        )
        p.device_type = r.choice(("ios", "android"))
        p.store = r.choice(STORES)
        return p

    def _app_install(self, p: Person) -> None:
        if p.app_anon is None:
            p.app_anon = self._uuid()
            p.device_id = self._uuid()

    def _loyalty(self, p: Person, *, other_email: bool) -> None:
        p.loyalty_id = self._digits("LOY", 10)
        p.pos_token = self._hex("tok_", 16)
        if other_email:
            nick = NICKNAMES.get(p.first)
            if nick is not None:
                p.loyalty_name = f"{nick} {p.last}"
                p.loyalty_email = self._email(f"{_ascii(nick)}.{_ascii(p.last)}")
            else:
                p.loyalty_name = p.name
                p.loyalty_email = self._email(f"{_ascii(p.first)[0]}.{_ascii(p.last)}")
        else:
            p.loyalty_name = p.name
            p.loyalty_email = p.email

    # ------------------------------------------------------------------ time
    def session(self, p: Person, day: int) -> int:
        """A session start on ``day`` (0 = 2026-01-05) at a plausible local hour, after ``p``'s last call."""
        r = self.rng
        hour = r.choices(range(7, 23), weights=(2, 3, 4, 4, 5, 6, 5, 4, 4, 5, 6, 8, 9, 8, 6, 3))[0]
        ts = START_MS + day * DAY + (hour - UTC_OFFSET[p.country]) * HOUR
        ts += r.randrange(60) * MINUTE + r.randrange(60) * SECOND + r.randrange(1000)
        if ts <= p.last_ts + 45 * MINUTE:
            ts = p.last_ts + r.randrange(60, 180) * MINUTE + r.randrange(60000)
        return ts

    def after(self, ts: int, lo_s: int, hi_s: int) -> int:
        """``ts`` plus ``lo_s``..``hi_s`` seconds and some milliseconds."""
        return ts + self.rng.randint(lo_s, hi_s) * SECOND + self.rng.randrange(1000)

    # ------------------------------------------------------------------ calls
    def emit(
        self,
        p: Person,
        ts: int,
        call: str,
        channel: str,
        *,
        event: str | None = None,
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        traits: dict[str, Any] | None = None,
        consent: bool = False,
        previous_id: str | None = None,
    ) -> int:
        """Append one Segment call by ``p`` on ``channel``; identifiers follow from the channel."""
        if not START_MS <= ts <= END_MS:
            raise ValueError(f"{iso(ts)} is outside the demo period ({p.kind})")
        if ts <= p.last_ts:
            raise ValueError(f"{iso(ts)} is not after the person's previous call ({p.kind})")
        p.last_ts = ts
        ctx: dict[str, Any] = {"channel": channel, "location": {"country": p.country}}
        ev: Event = {"type": call, "timestamp": iso(ts), "context": ctx}
        if channel == "web":
            ev["anonymousId"] = p.web_anon
            if p.web_in and p.user_id:
                ev["userId"] = p.user_id
        elif channel == "app":
            assert p.app_anon is not None and p.device_id is not None
            ev["anonymousId"] = p.app_anon
            if p.app_in and p.user_id:
                ev["userId"] = p.user_id
            ctx["device"] = {"id": p.device_id, "type": p.device_type}
        elif channel == "pos":
            assert p.pos_token is not None and p.loyalty_id is not None
            ev["anonymousId"] = p.pos_token
            ctx["externalIds"] = [{"id": p.loyalty_id, "type": "loyalty_id"}]
            if call != "identify":
                ctx["traits"] = {"email": p.loyalty_email, "name": p.loyalty_name}
        elif channel == "crm":
            assert p.crm_id is not None
            ev["userId"] = p.crm_id
            ctx["externalIds"] = [{"id": p.crm_id, "type": "crm_id"}]
            if call != "identify":
                ctx["traits"] = {"email": p.email}
        elif channel in ("email", "call_center"):
            assert p.user_id is not None
            ev["userId"] = p.user_id
            key, value = ("phone", p.phone) if channel == "call_center" and p.phone else ("email", p.email)
            ctx["traits"] = {key: value}
        else:
            raise ValueError(channel)
        if call == "track":
            ev["event"] = event
            ev["properties"] = properties or {}
        elif call in ("page", "screen"):
            ev["name"] = name
            ev["properties"] = properties or {}
        elif call == "identify":
            ev["traits"] = traits or {}
        elif call == "alias":
            ev["previousId"] = previous_id
        if consent:
            ctx["consent"] = {"categoryPreferences": dict(p.consent)}
        self.out.append(ev)
        return ts

    def identify(self, p: Person, ts: int, channel: str, *, phone: bool = True) -> int:
        traits: dict[str, Any] = {
            "email": p.email,
            "name": p.name,
            "first_name": p.first,
            "last_name": p.last,
        }
        if channel == "pos":
            traits = {"email": p.loyalty_email, "name": p.loyalty_name}
        if phone and p.phone:
            traits["phone"] = p.phone
        return self.emit(p, ts, "identify", channel, traits=traits, consent=True)

    def consent_change(self, p: Person, ts: int, channel: str, **prefs: bool) -> int:
        p.consent = {**p.consent, **prefs}
        return self.emit(p, ts, "track", channel, event=CONSENT_EVENT, consent=True)

    # ------------------------------------------------------------------ retail
    def _product(self, p: Person, idx: int, quantity: int | None = None) -> dict[str, Any]:
        pid, sku, name, category, base = PRODUCTS[idx]
        price = round(round(base * PRICE_FACTOR[p.currency]) - 0.01, 2)
        out: dict[str, Any] = {
            "product_id": pid,
            "sku": sku,
            "name": name,
            "price": price,
            "category": category,
            "currency": p.currency,
        }
        if quantity is not None:
            out["quantity"] = quantity
        return out

    def browse(self, p: Person, ts: int, channel: str, *, views: int) -> tuple[int, list[int]]:
        """Landing page or screen, then ``views`` products viewed. Returns the time and the products."""
        r = self.rng
        seen = r.sample(range(len(PRODUCTS)), views)
        category = PRODUCTS[seen[0]][3] if seen else r.choice(PRODUCTS)[3]
        if channel == "web":
            landing = r.choice(("Home", "Category", "Search Results"))
            path = {"Home": "/", "Category": f"/c/{category.lower()}", "Search Results": "/search"}[landing]
            props: dict[str, Any] = {"path": path, "url": SHOP + path, "title": f"{landing} | Northwind"}
            if landing == "Search Results":
                props["search"] = category.lower()
            ts = self.emit(p, ts, "page", "web", name=landing, properties=props)
        else:
            ts = self.emit(p, ts, "screen", "app", name=r.choice(("Home", "Category")), properties={})
        for idx in seen:
            ts = self.after(ts, 15, 150)
            product = self._product(p, idx)
            if channel == "web":
                path = f"/p/{product['sku'].lower()}"
                props = {"path": path, "url": SHOP + path, "title": f"{product['name']} | Northwind"}
                ts = self.after(self.emit(p, ts, "page", "web", name="Product", properties=props), 1, 3)
            else:
                ts = self.after(self.emit(p, ts, "screen", "app", name="Product", properties={}), 1, 3)
            ts = self.emit(p, ts, "track", channel, event="Product Viewed", properties=product)
        return ts, seen

    def cart(
        self, p: Person, ts: int, channel: str, products: Sequence[int], *, checkout: bool
    ) -> tuple[int, list[dict[str, Any]]]:
        items = []
        for idx in products:
            ts = self.after(ts, 20, 200)
            item = self._product(p, idx, self.rng.choices((1, 2, 3), weights=(8, 2, 1))[0])
            items.append(item)
            ts = self.emit(p, ts, "track", channel, event="Product Added", properties=item)
        if checkout:
            ts = self.after(ts, 30, 300)
            props = {
                "value": _subtotal(items),
                "currency": p.currency,
                "products": [_line(i) for i in items],
            }
            ts = self.emit(p, ts, "track", channel, event="Checkout Started", properties=props)
        return ts, items

    def order(self, p: Person, ts: int, channel: str, items: Sequence[dict[str, Any]]) -> int:
        self.seq += 1
        subtotal = _subtotal(items)
        shipping = 0.0 if channel == "pos" or subtotal >= 75 else 4.95
        props: dict[str, Any] = {
            "order_id": f"{'pos' if channel == 'pos' else 'ord'}-{self.seq:06d}",
            "total": round(subtotal + shipping, 2),
            "revenue": subtotal,
            "shipping": shipping,
            "currency": p.currency,
            "products": [_line(i) for i in items],
        }
        if channel == "pos":
            props["store_id"] = p.store
        p.bought += 1
        return self.emit(p, ts, "track", channel, event="Order Completed", properties=props)

    def pos_purchase(self, p: Person, ts: int) -> int:
        n = self.rng.choice((1, 1, 2, 3))
        items = [self._product(p, i, 1) for i in self.rng.sample(range(len(PRODUCTS)), n)]
        return self.order(p, ts, "pos", items)

    def web_sign_in(self, p: Person, ts: int, *, signup: bool) -> int:
        if p.user_id is None:
            p.user_id = self._user_id()
        p.web_in = True
        if signup:
            ts = self.emit(p, ts, "alias", "web", previous_id=p.web_anon)
            ts = self.after(ts, 0, 1)
        return self.identify(p, ts, "web")

    def app_sign_in(self, p: Person, ts: int) -> int:
        """Install (if new) and sign in on the app; the identify carries the loyalty id once there is one."""
        self._app_install(p)
        if p.user_id is None:
            p.user_id = self._user_id()
        p.app_in = True
        ts = self.emit(p, ts, "screen", "app", name="Sign In", properties={})
        ts = self.after(ts, 10, 60)
        ts = self.identify(p, ts, "app")
        if p.loyalty_id is not None:
            self.out[-1]["context"]["externalIds"] = [{"id": p.loyalty_id, "type": "loyalty_id"}]
        return ts

    def anon_visits(self, p: Person, day: int, n: int) -> int:
        for _ in range(n):
            ts = self.session(p, day)
            self.browse(p, ts, "web", views=self.rng.randint(1, 3))
            day += self.rng.randint(1, 6)
        return day

    def buy_session(self, p: Person, day: int, channel: str) -> int:
        """A signed-in session that ends in an order within 30 minutes of the last cart event."""
        r = self.rng
        ts = self.session(p, day)
        ts, seen = self.browse(p, ts, channel, views=r.randint(1, 3))
        ts, items = self.cart(p, ts, channel, seen[: r.randint(1, len(seen))], checkout=r.random() < 0.75)
        ts = self.after(ts, 60, 25 * 60)
        return self.order(p, ts, channel, items)

    def retail(self, p: Person) -> None:
        r = self.rng
        kind = p.kind
        if kind == "anon":
            day = r.randint(0, LAST_DAY - 20)
            for _ in range(r.randint(1, 3)):
                ts = self.session(p, day)
                ts, seen = self.browse(p, ts, "web", views=r.randint(1, 4))
                if r.random() < 0.3:
                    self.cart(p, ts, "web", seen[:1], checkout=False)
                day += r.randint(1, 6)
            return

        if kind == "pos_first":
            # In-store shopper: loyalty card first, under a nickname and another email.
            self._loyalty(p, other_email=r.random() < 0.7)
            day = r.randint(0, 60)
            ts = self.session(p, day)
            ts = self.identify(p, ts, "pos", phone=False)  # loyalty enrolment at the till
            self.pos_purchase(p, self.after(ts, 20, 90))
            day += r.randint(10, 30)
            self.pos_purchase(p, self.session(p, day))
            day += r.randint(10, 30)
            # Installs the app and links the card: the identify carries userId, email and loyalty_id.
            self.app_sign_in(p, self.session(p, day))
            day += r.randint(2, 10)
            self.web_sign_in(p, self.session(p, day), signup=False)
            day += r.randint(1, 5)
            self.buy_session(p, day, r.choice(("web", "app")))
            self.retail_follow_up(p, day)
            return

        day = self.anon_visits(p, r.randint(0, 120), r.randint(1, 3))
        if kind == "xchannel_pos":
            self._loyalty(p, other_email=r.random() < 0.5)
            # App account linked to the loyalty card.
            ts = self.app_sign_in(p, self.session(p, day))
            self.browse(p, self.after(ts, 5, 40), "app", views=r.randint(1, 2))
            day += r.randint(2, 20)
            # Reserve online, pay in store within 30 minutes, with the loyalty card.
            channel = r.choice(("web", "web", "app"))
            ts = self.session(p, day)
            if channel == "web":
                ts = self.after(self.web_sign_in(p, ts, signup=r.random() < 0.5), 5, 30)
            ts, seen = self.browse(p, ts, channel, views=r.randint(1, 3))
            ts, items = self.cart(p, ts, channel, seen[:2], checkout=False)
            self.order(p, self.after(ts, 8 * 60, 27 * 60), "pos", items)
            self.retail_follow_up(p, day)
            return

        if kind == "xchannel_web_app":
            ts = self.session(p, day)
            ts = self.after(self.web_sign_in(p, ts, signup=True), 5, 30)
            self.browse(p, ts, "web", views=r.randint(1, 2))
            day += r.randint(1, 7)
            self.browse(p, self.after(self.app_sign_in(p, self.session(p, day)), 5, 30), "app", views=1)
            day += r.randint(2, 14)
            cart_ch, order_ch = r.choice((("web", "app"), ("app", "web")))
            ts = self.session(p, day)
            ts, seen = self.browse(p, ts, cart_ch, views=r.randint(1, 3))
            ts, items = self.cart(p, ts, cart_ch, seen[:2], checkout=cart_ch == "web" and r.random() < 0.5)
            self.order(p, self.after(ts, 4 * 60, 26 * 60), order_ch, items)
            self.retail_follow_up(p, day)
            return

        channel = "app" if kind == "app_order" or (kind == "abandon" and r.random() < 0.3) else "web"
        ts = self.session(p, day)
        if channel == "app":
            ts = self.after(self.app_sign_in(p, ts), 5, 30)
        else:
            ts = self.after(self.web_sign_in(p, ts, signup=r.random() < 0.5), 5, 30)
        ts, seen = self.browse(p, ts, channel, views=r.randint(1, 3))
        picks = seen[: r.randint(1, len(seen))]
        ts, items = self.cart(
            p, ts, channel, picks, checkout=r.random() < (0.7 if kind != "abandon" else 0.5)
        )
        if kind != "abandon":
            self.order(p, self.after(ts, 60, 25 * 60), channel, items)
            self.retail_follow_up(p, day)
            return
        ending = r.choices(("gone", "late_order", "return_buy"), weights=(45, 20, 35))[0]
        if ending == "late_order":  # back after the reminder, 35-55 minutes later
            self.order(p, self.after(ts, 35 * 60, 55 * 60), channel, items)
            self.retail_follow_up(p, day)
        elif ending == "return_buy":
            day += r.randint(1, 10)
            self.buy_session(p, day, channel)
            self.retail_follow_up(p, day)

    def retail_follow_up(self, p: Person, day: int) -> None:
        """After a purchase: quiet for 50-90 days then back, back within 30 days, or gone."""
        r = self.rng
        mode = r.choices(("quiet", "soon", "gone"), weights=(38, 40, 22))[0]
        gap = r.randint(50, 90) if mode == "quiet" else r.randint(3, 29)
        if mode == "gone" or day + gap > LAST_DAY - 1:
            return
        day += gap
        ts = self.session(p, day)
        channel = "app" if p.app_in and r.random() < 0.5 else "web"
        if channel == "web" and not p.web_in:
            ts = self.after(self.web_sign_in(p, ts, signup=False), 5, 30)
        if mode == "soon" and r.random() < 0.4:
            props = {"campaign_id": f"cmp-2026-{r.randint(1, 40):03d}", "link_url": SHOP + "/new-in"}
            ts = self.after(
                self.emit(p, ts, "track", "email", event="Email Link Clicked", properties=props), 20, 120
            )
        if r.random() < 0.12:  # changes their mind about marketing, in the preference centre
            ts = self.after(self.consent_change(p, ts, channel, marketing=not p.consent["marketing"]), 5, 30)
        if r.random() < 0.55:
            ts, seen = self.browse(p, ts, channel, views=r.randint(1, 3))
            ts, items = self.cart(p, ts, channel, seen[:1], checkout=True)
            self.order(p, self.after(ts, 60, 20 * 60), channel, items)
            if r.random() < 0.5:
                self.retail_follow_up(p, day)
        else:
            self.browse(p, ts, channel, views=r.randint(1, 4))

    # ------------------------------------------------------------------ financial services
    def loan_check(self, p: Person, day: int, channel: str, product: str) -> int:
        r = self.rng
        lo, hi, step, terms = LOAN_PRODUCTS[product]
        path = "/loans/" + product.replace("_", "-")
        ts = self.session(p, day)
        if channel == "web":
            page = {"path": path, "url": BANK + path, "title": product.replace("_", " ").title()}
            ts = self.emit(p, ts, "page", "web", name="Loan Product", properties=page)
        else:
            ts = self.emit(p, ts, "screen", "app", name="Loan Product", properties={"product": product})
        results = ("eligible", "eligible_with_conditions", "not_eligible")
        props: dict[str, Any] = {
            "product": product,
            "amount": r.randrange(lo, hi + 1, step),
            "currency": p.currency,
            "term_months": r.choice(terms),
            "result": r.choices(results, weights=(6, 3, 1))[0],
        }
        ts = self.after(ts, 40, 400)
        return self.emit(p, ts, "track", channel, event="Loan Eligibility Checked", properties=props)

    def banking_visit(self, p: Person, day: int, channel: str) -> int:
        r = self.rng
        ts = self.session(p, day)
        more = r.sample(("Transactions", "Cards", "Savings", "Statements"), r.randint(0, 2))
        for name in ("Account Overview", *more):
            if channel == "web":
                path = "/" + name.lower().replace(" ", "-")
                ts = self.emit(p, ts, "page", "web", name=name, properties={"path": path, "url": BANK + path})
            else:
                ts = self.emit(p, ts, "screen", "app", name=name, properties={})
            ts = self.after(ts, 10, 120)
        return ts

    def financial(self, p: Person) -> None:
        r = self.rng
        p.user_id = self._digits("cust-", 8)
        channel = "app" if r.random() < 0.4 else "web"
        if channel == "app":
            self._app_install(p)
            p.app_in = True
        else:
            p.web_in = True
        kind = p.kind
        product = r.choices(tuple(LOAN_PRODUCTS), weights=(5, 3, 2))[0]
        if kind == "withdraw":
            p.consent["marketing"] = True  # they opted in at first, then change their mind
        if kind == "one":
            offsets = [0]
        elif kind == "two":
            offsets = [0, r.randint(1, 40)]
        elif kind in ("triple", "withdraw"):
            a = r.randint(0, 3)
            offsets = [0, a, r.randint(a + 1, 6)]
        elif kind == "burst":
            offsets = sorted([0] + [r.randint(0, 5) for _ in range(r.randint(3, 4))])
        elif kind == "spread":
            offsets = [0, r.randint(4, 6), r.randint(11, 15)]
            if r.random() < 0.4:
                offsets.append(offsets[-1] + r.randint(8, 12))
        elif kind == "twice":
            a = r.randint(0, 3)
            first = [0, a, r.randint(a + 1, 6)]
            s = r.randint(15, 25)
            b = r.randint(0, 3)
            offsets = [*first, s, s + b, s + r.randint(b + 1, 6)]
        else:
            raise ValueError(kind)
        day0 = r.randint(0, LAST_DAY - 10 - offsets[-1])
        ts = self.session(p, max(0, day0 - r.randint(0, 20)))
        if channel == "app":
            ts = self.emit(p, ts, "screen", "app", name="Sign In", properties={})
        else:
            ts = self.emit(
                p, ts, "page", "web", name="Sign In", properties={"path": "/login", "url": BANK + "/login"}
            )
        self.identify(p, self.after(ts, 10, 40), channel)
        # Everyday banking visits around the checks; they are activity, not checks.
        visits = [r.randint(-10, offsets[-1] + 8) for _ in range(r.randint(1, 4))]
        plan = sorted([(off, 1, i) for i, off in enumerate(offsets)] + [(v, 0, -1) for v in visits])
        for off, is_check, i in plan:
            if not is_check:
                self.banking_visit(p, max(0, day0 + off), channel)
                continue
            ts = self.loan_check(p, day0 + off, channel, product)
            if kind == "withdraw" and i == 1:
                # Withdraws marketing consent between the second and the third check.
                where = r.choice((channel, "call_center"))
                if where == "call_center":
                    ts = self.after(ts, 3600, 20 * 3600)
                    props = {"topic": "privacy", "duration_seconds": r.randint(120, 900)}
                    ts = self.emit(p, ts, "track", "call_center", event="Call Completed", properties=props)
                    ts = self.after(ts, 1, 5)
                else:
                    ts = self.after(ts, 20, 300)
                self.consent_change(p, ts, where, marketing=False, advertising=False)
            if kind == "burst" and i == 1 and p.phone:
                props = {"topic": "loan_options", "duration_seconds": r.randint(240, 1500)}
                self.emit(
                    p,
                    self.after(ts, 1800, 7200),
                    "track",
                    "call_center",
                    event="Call Completed",
                    properties=props,
                )

    # ------------------------------------------------------------------ automotive
    def configurator(self, p: Person, day: int, config: tuple[str, str, str, str], extra: int = 0) -> int:
        """A configurator session on the web: the model page, then the configuration (and others)."""
        r = self.rng
        ts = self.session(p, day)
        slug = config[0].lower().replace(" ", "-")
        props = {"path": f"/models/{slug}", "url": f"{MOTORS}/models/{slug}", "title": config[0]}
        ts = self.emit(p, ts, "page", "web", name="Model", properties=props)
        configs = [config] + [self.new_config() for _ in range(extra)]
        r.shuffle(configs)
        for model, trim, cfg, color in configs:
            ts = self.after(ts, 30, 400)
            price = dict(CAR_MODELS[model])[trim]
            props2 = {
                "model": model,
                "trim": trim,
                "configuration_id": cfg,
                "color": color,
                "price": round(price * PRICE_FACTOR[p.currency]),
                "currency": p.currency,
            }
            ts = self.emit(p, ts, "track", "web", event="Configuration Viewed", properties=props2)
        if r.random() < 0.4:
            name = r.choice(("Compare Models", "Offers", "Find a Dealer"))
            path = "/" + name.lower().replace(" ", "-")
            ts = self.emit(
                p,
                self.after(ts, 20, 200),
                "page",
                "web",
                name=name,
                properties={"path": path, "url": MOTORS + path},
            )
        return ts

    def new_config(self) -> tuple[str, str, str, str]:
        model = self.rng.choice(tuple(CAR_MODELS))
        trim = self.rng.choice(CAR_MODELS[model])[0]
        return model, trim, self._hex("cfg-", 8), self.rng.choice(CAR_COLORS)

    def lead(self, p: Person, ts: int, config: tuple[str, str, str, str], lead_type: str, dealer: str) -> int:
        ts = self.identify(p, self.after(ts, 60, 300), "web")
        props = {
            "lead_type": lead_type,
            "model": config[0],
            "configuration_id": config[2],
            "dealer_id": dealer,
        }
        return self.emit(p, self.after(ts, 0, 2), "track", "web", event="Lead Submitted", properties=props)

    def crm_record(self, p: Person, ts: int) -> int:
        """The dealer's CRM: its own contact id, the same email."""
        if p.crm_id is None:
            p.crm_id = self._digits("C-", 7)
        return self.identify(p, ts, "crm")

    def car_purchase(self, p: Person, ts: int, config: tuple[str, str, str, str], dealer: str) -> int:
        self.seq += 1
        model, trim, cfg, _color = config
        price = round(dict(CAR_MODELS[model])[trim] * PRICE_FACTOR[p.currency])
        line = {
            "product_id": cfg,
            "sku": f"{model}-{trim}".upper().replace(" ", "-"),
            "name": f"{model} {trim}",
            "price": price,
            "quantity": 1,
            "category": "Vehicle",
        }
        props = {
            "order_id": f"veh-{self.seq:06d}",
            "total": price,
            "revenue": price,
            "currency": p.currency,
            "products": [line],
            "dealer_id": dealer,
        }
        p.bought += 1
        return self.emit(p, ts, "track", "crm", event="Order Completed", properties=props)

    def automotive(self, p: Person) -> None:
        r = self.rng
        kind = p.kind
        dealer = r.choice(DEALERS[p.country])
        config = self.new_config()
        if kind == "browse":
            day = r.randint(0, LAST_DAY - 30)
            for _ in range(r.randint(1, 3)):
                self.configurator(p, day, self.new_config(), extra=r.randint(0, 1))
                day += r.randint(1, 12)
            return
        if kind == "spread_views":  # the same configuration three times, but over more than 14 days
            day = r.randint(0, LAST_DAY - 60)
            for d in (day, day + r.randint(6, 9), day + r.randint(16, 24)):
                ts = self.configurator(p, d, config, extra=r.randint(0, 1))
            if r.random() < 0.5:
                self.lead(p, ts, config, "brochure", dealer)
            return
        if kind == "lead_only":
            day = r.randint(0, LAST_DAY - 30)
            ts = self.configurator(p, day, config, extra=r.randint(0, 2))
            ts = self.configurator(p, day + r.randint(1, 10), self.new_config())
            self.lead(p, ts, config, r.choice(("brochure", "quote")), dealer)
            return
        if kind == "walk_in":  # the dealer's record first; some come online later with the same email
            day = r.randint(0, LAST_DAY - 60)
            ts = self.crm_record(p, self.session(p, day))
            props = {"dealer_id": dealer, "model": config[0], "configuration_id": config[2]}
            ts = self.emit(
                p, self.after(ts, 600, 3600), "track", "crm", event="Test Drive Completed", properties=props
            )
            if r.random() < 0.6:
                day += r.randint(5, 30)
                ts = self.configurator(p, day, config)
                self.lead(p, ts, config, "quote", dealer)
            return
        # High intent: the same configuration three times within 14 days, then a test drive lead.
        day = r.randint(0, 50 if kind in ("td_silent", "td_return") else 150)
        views = (day, day + r.randint(2, 5), day + r.randint(7, 12))
        for d in views:
            ts = self.configurator(p, d, config, extra=r.randint(0, 1))
        ts = self.lead(p, ts, config, "test_drive", dealer)
        props = {
            "model": config[0],
            "configuration_id": config[2],
            "dealer_id": dealer,
            "preferred_date": iso(START_MS + (views[2] + 5) * DAY)[:10],
        }
        self.emit(p, self.after(ts, 1, 3), "track", "web", event="Test Drive Requested", properties=props)
        ts = self.crm_record(p, self.session(p, views[2] + r.randint(1, 2)))
        td_day = views[2] + r.randint(3, 9)
        props = {"dealer_id": dealer, "model": config[0], "configuration_id": config[2]}
        td = self.emit(
            p, self.session(p, td_day), "track", "crm", event="Test Drive Completed", properties=props
        )
        if kind == "td_buy":
            self.car_purchase(p, self.session(p, td_day + r.randint(5, 25)), config, dealer)
        elif kind == "td_return":  # six months and more of silence, then back on the configurator
            back = (td - START_MS) // DAY + r.randint(184, 190)
            self.configurator(p, back, self.new_config(), extra=1)

    # ------------------------------------------------------------------ insurance
    def onboarding(self, p: Person) -> None:
        r = self.rng
        kind = p.kind
        product = r.choice(tuple(POLICY_STEPS))
        steps = POLICY_STEPS[product]
        channel = "app" if r.random() < 0.35 else "web"
        if channel == "app":
            self._app_install(p)
        flow = self._hex("flow-", 10)
        day = r.randint(0, LAST_DAY - 10)
        ts = self.session(p, day)
        if channel == "web":
            page = {"path": f"/quote/{product}", "url": f"{INSURER}/quote/{product}", "title": "Get a quote"}
            ts = self.emit(p, ts, "page", "web", name="Get a Quote", properties=page)
        else:
            ts = self.emit(p, ts, "screen", "app", name="Get a Quote", properties={"product": product})
        base: dict[str, Any] = {"flow_id": flow, "product": product}
        ts = self.emit(
            p, self.after(ts, 5, 40), "track", channel, event="Onboarding Started", properties=base
        )
        if kind == "drop":
            stop = r.choice(range(0, len(steps) - 1)) if r.random() < 0.15 else r.randint(1, len(steps) - 1)
        elif kind == "resume":
            stop = r.randint(1, len(steps) - 1)
        else:
            stop = len(steps)
        for i, step in enumerate(steps, start=1):
            if i > stop:
                if kind != "resume":
                    return
                day += r.randint(1, 6)  # back days later, on the step where they left
                ts = self.session(p, day)
                stop = len(steps)
            ts = self.after(ts, 45, 420)
            if i == 1:
                p.user_id = self._digits("ins-", 7)
                p.web_in = p.app_in = True
                ts = self.after(self.identify(p, ts, channel), 0, 2)
            props = {**base, "step": step, "step_index": i, "total_steps": len(steps)}
            ts = self.emit(p, ts, "track", channel, event="Onboarding Step Completed", properties=props)
        premium = round(r.uniform(9, 140) * PRICE_FACTOR[p.currency], 2)
        props = {
            **base,
            "policy_id": self._digits("POL-", 8),
            "premium": premium,
            "currency": p.currency,
            "billing": r.choice(("monthly", "annual")),
        }
        self.emit(p, self.after(ts, 5, 30), "track", channel, event="Onboarding Completed", properties=props)

    # ------------------------------------------------------------------ all together
    def run(self) -> list[Event]:
        cast = [(industry, kind) for industry, kind, n in CAST for _ in range(n)]
        self.rng.shuffle(cast)
        journeys = {
            "retail": self.retail,
            "financial": self.financial,
            "automotive": self.automotive,
            "insurance": self.onboarding,
        }
        for industry, kind in cast:
            journeys[industry](self.person(industry, kind))
        self.out.sort(key=lambda e: e["timestamp"])  # stable: a person's same-ms calls keep their order
        for i, ev in enumerate(self.out, start=1):
            ev["messageId"] = f"demo-{i:06d}"
        return self.out


def _line(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in ("product_id", "sku", "name", "price", "quantity", "category")}


def _subtotal(items: Sequence[dict[str, Any]]) -> float:
    return round(sum(float(i["price"]) * int(i["quantity"]) for i in items), 2)


def generate(seed: int = 7) -> list[dict[str, Any]]:
    """The demo events for ``seed``, sorted by timestamp, with ``messageId`` ``demo-000001``..."""
    return _Demo(seed).run()


def render(events: Sequence[dict[str, Any]]) -> str:
    """One compact JSON object per line, keys sorted, UTF-8 text, a final newline."""
    return "".join(_dumps(e) + "\n" for e in events)


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.demo.generate", description=DESCRIPTION)
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7, the bundled file)")
    parser.add_argument("--out", type=Path, default=DEMO_FILE, help=f"output file (default {DEMO_FILE})")
    args = parser.parse_args(argv)
    events = generate(args.seed)
    data = render(events).encode("utf-8")
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {PEOPLE} people, {len(events)} events, {len(data)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
