"""The Redis key names of the cluster: one owner for every name a worker or client builds.

Actors are spread over ``PARTITIONS`` hash tags; every key of an actor and its
partition's work index share the tag, so each function call touches one slot and
the work index changes atomically with the mail and the lease.  What each key holds
is described in ``_functions.py``, beside the functions that write it.
"""

from __future__ import annotations

import zlib

PARTITIONS = 32
PREFIX = "mva"
HINT_FREE = "mva:{hint}:free"  # stream: actors that need an owner now (wake-ups; scans find them anyway)
WORKERS = "mva:{workers}"  # zset: worker ID -> time of its last heartbeat (Redis's clock)
WORKER_LOAD = "mva:{workers}:load"  # zset: worker ID -> actors it held at its last heartbeat (same slot)


def partition(actor_id: str) -> int:
    """The partition an actor's keys live in."""
    return zlib.crc32(actor_id.encode("utf-8")) % PARTITIONS


def partition_tag(index: int) -> str:
    """The hash tag of partition ``index``: every key of its actors starts with it."""
    return f"{PREFIX}:{{p{index}}}"


def work_key(tag: str) -> str:
    """A partition's work index: actor -> when (ms, Redis's clock) a worker should look at it."""
    return f"{tag}:work"


def ready_key(tag: str) -> str:
    """A partition's "<owner>|<actor>" set of owned actors with new mail."""
    return f"{tag}:ready"


def all_key(tag: str) -> str:
    """A partition's inventory of every actor (score 0: paged by ZRANGE BYLEX)."""
    return f"{tag}:all"


def failed_key(tag: str) -> str:
    """A partition's index of failed actors (so finding them reads a few members, not every actor)."""
    return f"{tag}:failed"


def paused_key(tag: str) -> str:
    """A partition's index of paused actors."""
    return f"{tag}:paused"


def worker_info_key(worker_id: str) -> str:
    """A live worker's hash: host, pid, started, actors, turns (expires with its heartbeat)."""
    return f"mva:{{workers}}:w:{worker_id}"


def hint_key(worker_id: str) -> str:
    """The wake-up stream of one worker (same slot as HINT_FREE, so one XREAD blocks on both)."""
    return f"mva:{{hint}}:w:{worker_id}"


class ActorKeys:
    """The Redis key names of one actor (all in its partition's slot), built once: every turn's commit names them."""

    __slots__ = ("actor_id", "dedupe", "history", "history_base", "history_records", "journal", "lease", "mailbox",
                 "ready", "record", "state", "tag", "work")

    def __init__(self, actor_id: str, tag: str) -> None:
        self.actor_id, self.tag = actor_id, tag
        self.state = f"{tag}:a:{actor_id}"
        self.record = f"{tag}:c:{actor_id}"
        self.lease = f"{tag}:l:{actor_id}"
        self.mailbox = f"{tag}:m:{actor_id}"
        self.dedupe = f"{tag}:d:{actor_id}"
        self.journal = f"{tag}:j:{actor_id}"
        self.history = f"{tag}:h:{actor_id}"
        self.history_records = f"{tag}:hr:{actor_id}"
        self.history_base = f"{tag}:hb:{actor_id}"
        self.work = work_key(tag)
        self.ready = ready_key(tag)

    @classmethod
    def of(cls, actor_id: str) -> ActorKeys:
        """The keys of ``actor_id``, in the partition its ID hashes to."""
        return cls(actor_id, partition_tag(partition(actor_id)))

    @property
    def all(self) -> str:
        """The partition's inventory of every actor."""
        return all_key(self.tag)

    @property
    def failed(self) -> str:
        """The partition's index of failed actors."""
        return failed_key(self.tag)

    @property
    def paused(self) -> str:
        """The partition's index of paused actors."""
        return paused_key(self.tag)

    def reply(self, message_id: str) -> str:
        """The stream a call's reply is written to (the caller blocks on it)."""
        return f"{self.tag}:r:{self.actor_id}:{message_id}"


def sync_key(tag: str) -> str:
    """A partition's counter that ``mva_sync`` bumps (a write a WAIT can wait for)."""
    return f"{tag}:sync"
