"""The steps journeys are made of: identifiers, sessions, calls, browsing, carts, orders."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.demo.cast import (
    CONSENT_EVENT,
    COUNTRY_WEIGHTS,
    DAY,
    EMAIL_DOMAINS,
    END_MS,
    FIRST_NAMES,
    HOUR,
    LAST_NAMES,
    MINUTE,
    NICKNAMES,
    PRICE_FACTOR,
    PRODUCTS,
    SECOND,
    SHOP,
    START_MS,
    STORES,
    US_AREA_CODES,
    UTC_OFFSET,
    Event,
    Person,
    ascii_fold,
    iso,
)


def _line(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in ("product_id", "sku", "name", "price", "quantity", "category")}


def _subtotal(items: Sequence[dict[str, Any]]) -> float:
    return round(sum(float(i["price"]) * int(i["quantity"]) for i in items), 2)


@dataclass
class Journeys:
    """The generator's state (one seeded ``random.Random``) and the steps every journey shares."""

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
            email=self._email(f"{ascii_fold(first)}.{ascii_fold(last)}"),
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
                p.loyalty_email = self._email(f"{ascii_fold(nick)}.{ascii_fold(p.last)}")
            else:
                p.loyalty_name = p.name
                p.loyalty_email = self._email(f"{ascii_fold(p.first)[0]}.{ascii_fold(p.last)}")
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
