"""``cxstream report``: read the measurement topics and print the uplift report (text or JSON)."""

from __future__ import annotations

from typing import Any

from streams.measure import kpi_report, report
from streams.measure.read import read_measurement, read_topic
from streams.model import dumps
from streams.settings import Settings


async def run_report(
    settings: Settings,
    *,
    as_json: bool = False,
    within: float = 120.0,
    with_kpis: bool = False,
    churn_days: float = 90,
) -> str:
    """The report of everything in ``cx.decisions`` and ``cx.conversions`` now; with ``with_kpis``
    also the program KPIs and survey scores from the repartition topic (``churn_days``: the
    policy's ``measurement.churn_days``, read by the caller, so this package does not import
    :mod:`streams.consent`, which imports it)."""
    decisions, conversions = await read_measurement(settings, within)
    kpis = None
    if with_kpis:
        profiled = await read_topic(settings, settings.topic_profiled, within)
        kpis = kpi_report.kpis(
            [r for value in profiled for r in _flat(value) if isinstance(r, dict)],
            [d for d in decisions if isinstance(d, dict)],
            churn_days,
        )
    return format_report(decisions, conversions, as_json=as_json, kpis=kpis)


def _flat(value: object) -> list[object]:
    """A repartition record's records: those of a batch (``k`` ``b``, see
    :func:`streams.pipeline.envelope.batched`), else itself."""
    if isinstance(value, dict) and value.get("k") == "b" and isinstance(value.get("r"), list):
        return list(value["r"])
    return [value]


def format_report(
    decisions: list[object],
    conversions: list[object],
    *,
    as_json: bool = False,
    kpis: dict[str, Any] | None = None,
) -> str:
    """The report of these records (dicts; anything else is ignored), and ``kpis`` if given."""
    rules = report.uplift(
        [d for d in decisions if isinstance(d, dict)], [c for c in conversions if isinstance(c, dict)]
    )
    if as_json:
        doc: dict[str, Any] = {"method": report.METHOD, "rules": [r.to_dict() for r in rules]}
        if kpis is not None:
            doc["kpis"] = kpis
        return dumps(doc).decode() + "\n"
    text = report.render(rules)
    return text if kpis is None else text + "\n" + kpi_report.render(kpis)
