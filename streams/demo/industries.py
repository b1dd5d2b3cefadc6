"""Financial services, automotive and insurance journeys."""

from __future__ import annotations

from typing import Any

from streams.demo.cast import (
    BANK,
    CAR_COLORS,
    CAR_MODELS,
    DAY,
    DEALERS,
    INSURER,
    LAST_DAY,
    LOAN_PRODUCTS,
    MOTORS,
    POLICY_STEPS,
    PRICE_FACTOR,
    START_MS,
    Person,
    iso,
)
from streams.demo.steps import Journeys


class Industries(Journeys):
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
