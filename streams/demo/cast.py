"""The demo's cast and catalogs: who is in it, what they buy, where, and how they are called."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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


def ascii_fold(s: str) -> str:
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
