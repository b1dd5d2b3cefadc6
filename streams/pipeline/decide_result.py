"""What one run of the decide stage (a batch, a round of due timers, a release of waiting
profiles) produced and changed: :class:`Result`, with the :class:`Commit` to persist once its
records are acked (:meth:`streams.pipeline.decide_stage.DecideStage.commit`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.engine.timers import DueTimer, TimerOps
from streams.pipeline.records import OutRecord
from streams.state import ProfileState


@dataclass(slots=True, init=False)
class Commit:
    """What to persist once the batch's records are acked."""

    states: dict[str, ProfileState | None] = field(default_factory=dict)
    timers: dict[int, TimerOps] = field(default_factory=dict)
    fired: dict[int, list[DueTimer]] = field(default_factory=dict)
    marks: dict[int, dict[int, int]] = field(default_factory=dict)
    #: claimed but not fired (the profile waits for a hand-off): claim given back
    released: dict[int, list[DueTimer]] = field(default_factory=dict)
    #: profiles that started waiting for a hand-off (partition -> pid -> since), and stopped
    waits: dict[int, dict[str, int]] = field(default_factory=dict)
    unwaits: dict[int, set[str]] = field(default_factory=dict)
    #: known customers' last activity (partition -> pid -> ms), and profiles that stopped being
    #: customers of a partition (merged away, erased): :mod:`streams.measure.activity`
    active: dict[int, dict[str, int]] = field(default_factory=dict)
    inactive: dict[int, set[str]] = field(default_factory=dict)

    def __init__(
        self,
        states: dict[str, ProfileState | None] | None = None,
        timers: dict[int, TimerOps] | None = None,
        fired: dict[int, list[DueTimer]] | None = None,
        marks: dict[int, dict[int, int]] | None = None,
        released: dict[int, list[DueTimer]] | None = None,
        waits: dict[int, dict[str, int]] | None = None,
        unwaits: dict[int, set[str]] | None = None,
        active: dict[int, dict[str, int]] | None = None,
        inactive: dict[int, set[str]] | None = None,
    ) -> None:
        # the fields' defaults, written out: compiled (streams/native.py), a C function; the
        # dataclass's own __init__ stays interpreted (issue 13)
        self.states = {} if states is None else states
        self.timers = {} if timers is None else timers
        self.fired = {} if fired is None else fired
        self.marks = {} if marks is None else marks
        self.released = {} if released is None else released
        self.waits = {} if waits is None else waits
        self.unwaits = {} if unwaits is None else unwaits
        self.active = {} if active is None else active
        self.inactive = {} if inactive is None else inactive

    def seen(self, partition: int, pid: str, last_activity: int) -> None:
        self.inactive.get(partition, set()).discard(pid)
        self.active.setdefault(partition, {})[pid] = last_activity

    def gone(self, partition: int, pid: str) -> None:
        self.active.get(partition, {}).pop(pid, None)
        self.inactive.setdefault(partition, set()).add(pid)

    def wait(self, partition: int, pid: str, since: int) -> None:
        self.unwaits.get(partition, set()).discard(pid)
        self.waits.setdefault(partition, {})[pid] = since

    def unwait(self, partition: int, pid: str) -> None:
        self.waits.get(partition, {}).pop(pid, None)
        self.unwaits.setdefault(partition, set()).add(pid)

    def timer_ops(self, partition: int) -> TimerOps:
        ops = self.timers.get(partition)
        if ops is None:
            ops = self.timers[partition] = TimerOps({}, set())
        return ops


@dataclass(slots=True, init=False)
class Result:
    records: list[OutRecord] = field(default_factory=list)
    commit: Commit = field(default_factory=Commit)
    #: (rule, origin wall ms) per activation, for the event-to-trigger latency metric
    latencies: list[tuple[str, int]] = field(default_factory=list)
    #: set by a round of due timers that fired some and may have left more due (a partition gave
    #: as many as were asked for, or a timer that fired set one due already)
    more: bool = False

    def __init__(
        self,
        records: list[OutRecord] | None = None,
        commit: Commit | None = None,
        latencies: list[tuple[str, int]] | None = None,
        more: bool = False,
    ) -> None:
        # the fields' defaults, written out (see Commit.__init__)
        self.records = [] if records is None else records
        self.commit = Commit() if commit is None else commit
        self.latencies = [] if latencies is None else latencies
        self.more = more

    def absorb(self, other: Result) -> None:
        """Append what ``other`` produced and changed (records and timer operations) after ours."""
        self.records += other.records
        self.latencies += other.latencies
        for p, theirs in other.commit.timers.items():
            self.commit.timer_ops(p).then(theirs.cancel, theirs.schedule)
        self.commit.states.update(other.commit.states)
        for p, w in other.commit.waits.items():
            for pid, since in w.items():
                self.commit.wait(p, pid, since)
        for p, gone in other.commit.unwaits.items():
            for pid in gone:
                self.commit.unwait(p, pid)
        for p, seen in other.commit.active.items():
            for pid, ts in seen.items():
                self.commit.seen(p, pid, ts)
        for p, left in other.commit.inactive.items():
            for pid in left:
                self.commit.gone(p, pid)
