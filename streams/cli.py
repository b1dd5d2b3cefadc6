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
``profile show REF``   the unified profile of ``TYPE:VALUE`` (e.g. ``email:ann@example.com``)
``profile export REF`` everything held about a person, as JSON (subject access; ``--out FILE``)
``profile forget REF`` erase a profile (right to be forgotten)
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
        f"{len(result.activations)} activations, {len(result.decisions)} decisions",
        err=True,
    )


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
