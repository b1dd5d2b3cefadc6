"""The "done when" of issue 17, on a real worker (local Tansu broker + Redis): replayed journeys
where who converts is drawn independently of the holdout. The held-out share is within the
binomial range of the configured percent, every conversion in the window is on cx.conversions
once with the right group and none outside it, and ``cxstream report`` prints the hand-computed
rates and uplift."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from helpers import consume, json_values, running_worker
from measure.journeys import HOLDOUT_PERCENT, binomial_range, check, outcome, plan, policy_file

from streams.dev import _env
from streams.measure import report
from streams.replay import replay_file
from streams.settings import Settings
from streams.testing import at

pytestmark = pytest.mark.stack


def test_a_replay_through_a_worker_measures_holdouts_conversions_and_uplift(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    p = plan(400, at("2026-03-01T00:00:00Z"), seed=11)
    s = make_settings(rules=("loan_eligibility_repeat",), policy_file=policy_file(tmp_path))
    topics(s)
    journeys = tmp_path / "journeys.jsonl"
    journeys.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in p.messages))
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        asyncio.run(replay_file(s, journeys))
        decisions = json_values(consume(s, s.topic_decisions, want=len(p.users), timeout=180, idle=2))
        conversions = json_values(consume(s, s.topic_conversions, want=len(p.converts), timeout=60, idle=3))
        created = json_values(consume(s, s.topic_identity_changes, want=len(p.users), timeout=60, idle=1))
        assert proc.poll() is None, log.read_text()[-3000:]

    hand = check(p, outcome(p, decisions, conversions, created))
    lo, hi = binomial_range(len(p.users), HOLDOUT_PERCENT)
    assert lo <= hand["holdout"]["triggers"] <= hi, hand
    assert hand["holdout"]["conversions"] > 0 and hand["treated"]["conversions"] > 0

    # the command, as a user runs it, reading the topics from the beginning
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", "report", "--json"],
        env=_env(s),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    (rule,) = json.loads(run.stdout)["rules"]
    assert rule["rule"] == "loan_eligibility_repeat"
    t, h = hand["treated"], hand["holdout"]
    for g, x in (("treated", t), ("holdout", h)):
        assert rule["groups"][g]["triggers"] == x["triggers"]
        assert rule["groups"][g]["conversions"] == x["conversions"]
    pt, ph = t["conversions"] / t["triggers"], h["conversions"] / h["triggers"]
    assert rule["uplift"]["estimate"] == pytest.approx(pt - ph)
    lo_d, hi_d = report.newcombe(t["conversions"], t["triggers"], h["conversions"], h["triggers"])[1:]  # type: ignore[index]
    assert (rule["uplift"]["low"], rule["uplift"]["high"]) == pytest.approx((lo_d, hi_d))
    assert rule["relativeUplift"]["estimate"] == pytest.approx(pt / ph - 1)

    # the program KPIs and the survey, per rule exposure, from the repartition topic
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", "report", "--json", "--kpi"],
        env=_env(s),
        capture_output=True,
        timeout=120,
        check=True,
    )
    k = json.loads(run.stdout)["kpis"]
    assert (k["people"], k["customers"]) == (len(p.users), len(p.users))
    assert k["knownEventShare"] == 1.0 and k["crossChannelReach"] > 0
    nps = k["surveys"]["nps"]["byRuleExposure"]["loan_eligibility_repeat"]
    o = outcome(p, decisions, conversions, created)
    for g in ("treated", "holdout"):
        mine = [score for u, score in p.scores.items() if o.group[u] == g]
        assert nps[g]["answers"] == len(mine)
        assert nps[g]["meanScore"] == pytest.approx(sum(mine) / len(mine))

    text = subprocess.run(
        [sys.executable, "-m", "streams.cli", "report"],
        env=_env(s),
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode()
    assert f"rate {100 * pt:>7.2f}%" in text and f"rate {100 * ph:>7.2f}%" in text, text
    assert f"absolute {100 * (pt - ph):+.2f} pp" in text, text
