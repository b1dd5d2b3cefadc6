"""The ``cxstream`` command.

=====================  ==================================================================
command                what it does
=====================  ==================================================================
``dev``                embedded broker + Redis, topics, a worker, the demo replay, live triggers
``worker``             a worker against the Kafka and Redis given by settings
``replay FILE``        produce a JSONL file of Segment events to ``cx.events.raw``
``tail [TOPIC]``       print a topic's records as they arrive (default ``cx.activations``)
``topics create``      create every topic with ``CXSTREAM_PARTITIONS`` partitions
``simulate FILE``      the same pipeline over a file, in one process, in memory, event clock
``report``             per rule: triggers and conversions of the treated and held-out groups, uplift
``shadow-diff RULE``   a rule's shadow decisions (``CXSTREAM_SHADOW_RULES``) against its live ones
``profile show REF``   the unified profile of ``TYPE:VALUE`` (e.g. ``email:ann@example.com``)
``profile export REF`` everything held about a person, as JSON (subject access; ``--out FILE``)
``profile forget REF`` erase a profile (right to be forgotten)
``api``                the Profile API over HTTP (``CXSTREAM_API_PORT``, bearer tokens)
=====================  ==================================================================
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from streams.exceptions import CxStreamError
from streams.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


class Stop(click.ClickException):
    """One of our errors: ``Error: <one line>`` on stderr and exit code 2 (click's own is 1)."""

    exit_code = 2


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except CxStreamError as exc:
        raise Stop(str(exc)) from None


def _guard(fn: F) -> F:
    """Turn our own errors into one line on stderr and exit code 2, never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CxStreamError as exc:
            raise Stop(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cxstream")
def main() -> None:
    """cxstream: real-time customer-event processing on Kafka and Redis."""


@main.command()
@_guard
def worker() -> None:
    """Run a worker against the Kafka and Redis of the settings (CXSTREAM_*)."""
    from streams.worker import run_worker

    run_worker(_settings())


@main.command()
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSONL journeys to replay (default: the bundled demo set)",
)
@click.option("--serve/--no-serve", default=False, help="keep running after the replay (Ctrl-C to stop)")
@click.option(
    "--linger", default=8.0, show_default=True, help="seconds of quiet after the replay before stopping"
)
@_guard
def dev(file: Path | None, serve: bool, linger: float) -> None:
    """The main job on the embedded default: broker, Redis, worker, demo replay, live triggers."""
    from streams.dev import run_dev

    sys.exit(run_dev(file, serve=serve, linger=linger))


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
@click.option("--topic", default=None, help="target topic (default: CXSTREAM_TOPIC_RAW)")
@_guard
def replay(file: Path, rate: float, topic: str | None) -> None:
    """Produce a JSONL file of Segment events, in file order, keyed by userId/anonymousId."""
    from streams.replay import replay_file

    s = _settings()
    n = asyncio.run(replay_file(s, file, rate=rate, topic=topic or s.topic_raw))
    click.echo(f"replayed {n} events from {file} to {topic or s.topic_raw}")


@main.command()
@click.argument("topic", required=False)
@click.option("--from-beginning", is_flag=True, help="start at the earliest offset")
@click.option("--limit", type=int, default=0, help="stop after this many records (0: never)")
@_guard
def tail(topic: str | None, from_beginning: bool, limit: int) -> None:
    """Print a topic's records as JSON lines (default: the activations topic)."""
    from streams.replay import tail_topic

    s = _settings()
    asyncio.run(tail_topic(s, topic or s.topic_activations, from_beginning=from_beginning, limit=limit))


@main.group()
def topics() -> None:
    """Topic administration."""


@topics.command("create")
@_guard
def topics_create() -> None:
    """Create every topic the app uses, with CXSTREAM_PARTITIONS partitions (existing ones are kept)."""
    from streams.kafka import create_topics, topic_names

    s = _settings()
    created = asyncio.run(create_topics(s))
    for t in topic_names(s):
        click.echo(f"{'created' if t in created else 'exists '}  {t}  ({s.partitions} partitions)")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--decisions/--no-decisions", default=False, help="also print every decision record")
@_guard
def simulate(file: Path, decisions: bool) -> None:
    """Run the pipeline over a JSONL file in one process (in-memory stores, event clock)."""
    from streams.simulate import simulate_file

    s = _settings(clock="event")
    result = asyncio.run(simulate_file(s, file))
    for rec in result.activations:
        click.echo(rec.decode())
    if decisions:
        for rec in result.decisions:
            click.echo(rec.decode())
    click.echo(
        f"# {result.events} events, {result.deadletters} dead-lettered, "
        f"{len(result.activations)} activations, {len(result.decisions)} decisions, "
        f"{len(result.conversions)} conversions",
        err=True,
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
@click.option(
    "--kpi", "with_kpis", is_flag=True, help="also the program KPIs and surveys (reads the repartition topic)"
)
@click.option("--timeout", default=120.0, show_default=True, help="seconds to read the topics to their end")
@_guard
def report(as_json: bool, with_kpis: bool, timeout: float) -> None:
    """Does it work? Per rule, conversion rates of the treated and held-out groups and the uplift
    with 95% intervals, from cx.decisions and cx.conversions read from the beginning."""
    from streams.consent.policy import load_policy
    from streams.measure.command import run_report

    settings = _settings()
    churn = load_policy(settings.policy_file).measurement.churn_days if with_kpis else 90
    out = asyncio.run(
        run_report(settings, as_json=as_json, within=timeout, with_kpis=with_kpis, churn_days=churn)
    )
    click.echo(out, nl=False)


@main.command("shadow-diff")
@click.argument("rule")
@click.option("--since", default=None, help="first trigger time compared (ISO 8601, UTC if naive)")
@click.option("--until", default=None, help="end of the period, exclusive (ISO 8601)")
@click.option("--version", "version", type=int, default=None, help="the shadow version (default: any)")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="decision records as JSON lines (e.g. simulate --decisions) instead of reading cx.decisions",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
@click.option("--timeout", default=120.0, show_default=True, help="seconds to read cx.decisions to its end")
@_guard
def shadow_diff(
    rule: str,
    since: str | None,
    until: str | None,
    version: int | None,
    file: Path | None,
    as_json: bool,
    timeout: float,
) -> None:
    """Compare a rule's shadow decisions (CXSTREAM_SHADOW_RULES) with its live ones over one period."""
    import orjson

    from streams.engine.shadow_diff import diff
    from streams.intake.normalize import parse_time_ms
    from streams.measure.read import read_topic

    try:
        start, end = (parse_time_ms(t) if t else None for t in (since, until))
    except ValueError as exc:
        raise Stop(f"--since/--until must be ISO 8601 times: {exc}") from None
    if file is not None:
        lines = file.read_bytes().splitlines()
        records = [orjson.loads(line) for line in lines if line.strip().startswith(b"{")]
    else:
        s = _settings()
        records = asyncio.run(read_topic(s, s.topic_decisions, timeout))
    report = diff(records, rule, since=start, until=end, version=version)
    click.echo(orjson.dumps(report.as_dict()).decode() if as_json else report.text(), nl=as_json)


@main.command()
@_guard
def api() -> None:
    """Serve the Profile API: GET /v1/profiles/TYPE:VALUE (bearer tokens from CXSTREAM_API_TOKENS)."""
    from streams.api import run_api

    run_api(_settings())


@main.group()
def profile() -> None:
    """Look up or erase a unified profile."""


@profile.command("show")
@click.argument("ref")
@_guard
def profile_show(ref: str) -> None:
    """Show the unified profile an identifier (TYPE:VALUE) belongs to."""
    from streams.profiles import show_profile

    click.echo(asyncio.run(show_profile(_settings(), ref)))


@profile.command("export")
@click.argument("ref")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write to FILE, not stdout")
@_guard
def profile_export(ref: str, out: Path | None) -> None:
    """Everything held about the person of TYPE:VALUE, as one JSON document (subject access)."""
    from streams.model import dumps
    from streams.profiles import export_profile

    doc = dumps(asyncio.run(export_profile(_settings(), ref))).decode()
    if out is None:
        click.echo(doc)
    else:
        out.write_text(doc + "\n")
        click.echo(f"wrote the export of {ref} to {out}", err=True)


@profile.command("forget")
@click.argument("ref")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@_guard
def profile_forget(ref: str, yes: bool) -> None:
    """Erase the profile of TYPE:VALUE: identifiers, traits, rule state, timers."""
    from streams.profiles import forget_profile

    if not yes:
        click.confirm(f"Erase the profile of {ref} and everything linked to it?", abort=True)
    click.echo(asyncio.run(forget_profile(_settings(), ref)))


def setup_logging(level: str) -> None:
    """JSON logs (structlog) on stderr; see :mod:`streams.logs`."""
    from streams.logs import setup_logging as setup

    setup(level)


if __name__ == "__main__":
    main()
