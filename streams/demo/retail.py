"""Retail journeys: web and app orders, abandoned carts, cross-channel purchases, point of sale."""

from __future__ import annotations

from streams.demo.cast import (
    LAST_DAY,
    SHOP,
    Person,
)
from streams.demo.steps import Journeys


class Retail(Journeys):
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
