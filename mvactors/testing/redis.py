"""Throw-away Redis servers for tests and examples: the system ``redis-server`` on loopback.

>>> with redis_server() as url:            # or: async with redis_server() as url:
...     client = redis.Redis.from_url(url)

Each server runs in its own temporary directory with the append-only file on and
fsynced on every write (``appendfsync always``), so a ``kill -9`` of the server loses
nothing it acknowledged, and :meth:`RedisServer.restart` brings it back from that file.
:func:`redis_cluster` starts a Redis Cluster of several masters, each with ``replicas``
replicas.  Every server refuses to evict (``maxmemory-policy noeviction``), as mvactors requires.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio.to_thread

_START_TIMEOUT = 20.0
_BUS_PORT_OFFSET = 10000  # Redis Cluster talks between nodes on port + 10000


class RedisUnavailable(RuntimeError):
    """``redis-server`` is not installed or did not start."""


def redis_server_binary() -> str:
    """The path of the system ``redis-server`` (``$MVACTORS_REDIS_SERVER`` overrides it)."""
    path = os.environ.get("MVACTORS_REDIS_SERVER") or shutil.which("redis-server")
    if not path:
        raise RedisUnavailable("redis-server is not on PATH; run `./dev setup` (it installs Debian's "
                               "redis-server) or install Redis 7 yourself")
    return path


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster: bool = False) -> int:
    """A loopback TCP port nothing listens on (and, for cluster nodes, its bus port too)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not cluster or (port + _BUS_PORT_OFFSET < 65536 and _port_free(port + _BUS_PORT_OFFSET)):
            return port
    raise RedisUnavailable("found no free loopback port for redis-server")


def _ping(port: int, timeout: float = 0.5) -> bytes:
    """One raw PING; the first reply line (``+PONG``, ``-LOADING ...``) or b"" when nothing listens."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return b""


def _command(port: int, *args: str, timeout: float = 5.0) -> str:
    """Run one command on a node with ``redis-cli`` and return its output."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RedisUnavailable("redis-cli is not on PATH; run `./dev setup` (it installs redis-tools)")
    done = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done.stdout


class _Started:
    """``with`` starts it and stops it (and deletes its files), also when starting fails half-way."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisServer(_Started):
    """One ``redis-server`` process on a free loopback port, AOF on, in a temporary directory.

    ``url`` is ``redis://127.0.0.1:<port>/0``.  :meth:`kill` sends SIGKILL (the AOF keeps what
    was acknowledged); :meth:`restart` starts it again on the same port from the same files.
    """

    def __init__(self, *, cluster: bool = False, directory: str | Path | None = None,
                 extra: tuple[str, ...] = (), node_timeout_ms: int = 5000, replica_of: int | None = None,
                 maxmemory: str | None = None, maxmemory_policy: str = "noeviction") -> None:
        self.cluster = cluster
        self.node_timeout_ms = node_timeout_ms
        self.replica_of = replica_of
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        self.port = free_port(cluster)
        self._own_dir = directory is None
        self.dir = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="mvactors-redis-"))
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--daemonize", "no", "--protected-mode", "no",
                "--logfile", str(self.dir / "redis.log"), "--maxmemory-policy", self.maxmemory_policy]
        if self.maxmemory is not None:
            argv += ["--maxmemory", self.maxmemory]
        if self.replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        if self.cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", str(self.node_timeout_ms)]
        return argv + list(self.extra)

    def start(self) -> RedisServer:
        """Start the server and return once it answers PING (after loading its AOF)."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:] \
                    if (self.dir / "redis.log").exists() else ""
                raise RedisUnavailable(f"redis-server exited with {self.process.returncode}: {err}{log}")
            if _ping(self.port) == b"+PONG":
                return self
            time.sleep(0.01)  # polling a socket: redis-server has no readiness pipe
        self.stop()
        raise RedisUnavailable(f"redis-server on port {self.port} did not answer within {_START_TIMEOUT}s")

    def kill(self) -> None:
        """SIGKILL the server (as a crash would) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> RedisServer:
        """Start again on the same port from the same directory (so from the AOF)."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM; SIGKILL if it hangs)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        self.process = None

    def close(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)



class RedisCluster(_Started):
    """``masters`` cluster-enabled servers joined into one Redis Cluster (slots split evenly).

    With ``replicas`` each master gets that many replicas (AOF on, ``appendfsync always`` like
    every node), and ``node_timeout_ms`` sets ``cluster-node-timeout``: how long a master may
    be silent before its replica is promoted (Redis's default is 15 s; 5 s here, ~2 s for
    failover tests).  ``extra`` adds redis-server arguments to every node.
    """

    def __init__(self, masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 5000,
                 extra: tuple[str, ...] = ()) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        if replicas < 0:
            raise ValueError(f"replicas must be 0 or more, not {replicas}")
        self.masters = masters
        self.replicas = replicas
        self.root = Path(tempfile.mkdtemp(prefix="mvactors-redis-cluster-"))
        self.nodes = [RedisServer(cluster=True, directory=self.root / f"node{i}", node_timeout_ms=node_timeout_ms,
                                  extra=extra) for i in range(masters * (1 + replicas))]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        """Start every node, join them and wait until every node reports ``cluster_state:ok``."""
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RedisUnavailable("redis-cli is not on PATH; run `./dev setup` (it installs redis-tools)")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        done = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas),
                               "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RedisUnavailable(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        # Gossip converges in 1-2 s on an idle machine; a loaded CI box has taken over 20.
        deadline = time.monotonic() + 3 * _START_TIMEOUT
        wanted = ("cluster_state:ok", f"cluster_known_nodes:{len(self.nodes)}", f"cluster_size:{self.masters}")
        missing: list[str] = []
        while time.monotonic() < deadline:
            # ok alone is not enough: a node can report it before it knows every master
            # (a client asking it then saw 2 primaries of 3).
            missing = [f"{node.port}: {fact}" for node in self.nodes
                       for info in [_command(node.port, "CLUSTER", "INFO")] for fact in wanted if fact not in info]
            # A replica that has not finished its first sync would lose what it is sent meanwhile.
            missing += [f"{node.port}: master_link_status:up" for node in self.nodes
                        if "role:slave" in (info := _command(node.port, "INFO", "replication"))
                        and "master_link_status:up" not in info]
            if not missing:
                return self
            time.sleep(0.05)  # gossip converges on its own schedule; nothing to wait on
        raise RedisUnavailable(f"the Redis Cluster did not converge in {3 * _START_TIMEOUT:g} s; "
                               f"still missing: {', '.join(missing)}")

    def role(self, node: RedisServer) -> str:
        """``"master"`` or ``"slave"``, as the node itself says now (failovers change it)."""
        return _command(node.port, "ROLE").split("\n", 1)[0].strip()

    def primaries(self) -> list[RedisServer]:
        """The nodes that are masters now."""
        return [node for node in self.nodes if node.process is not None and self.role(node) == "master"]

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The nodes replicating ``master`` now."""
        found = []
        for node in self.nodes:
            if node is master or node.process is None:
                continue
            info = _command(node.port, "INFO", "replication")
            if "role:slave" in info.splitlines() and f"master_port:{master.port}" in info.splitlines():
                found.append(node)
        return found

    def close(self) -> None:
        """Stop every node and delete their files."""
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)



class ReplicatedRedis(_Started):
    """One master and ``replicas`` replicas of it (plain replication, no Cluster), every node with
    AOF on and ``appendfsync always``.  :meth:`start` returns once each replica has synced.

    ``master`` and ``replicas`` are :class:`RedisServer` objects (kill, restart, SIGSTOP their
    ``process``); ``url`` is the master's.
    """

    def __init__(self, replicas: int = 1, *, extra: tuple[str, ...] = ()) -> None:
        # The first full sync waits repl-diskless-sync-delay (5 s by default) for more replicas: 0 here.
        self.master = RedisServer(extra=("--repl-diskless-sync-delay", "0", *extra))
        self.replicas = [RedisServer(replica_of=self.master.port, extra=extra) for _ in range(replicas)]

    @property
    def url(self) -> str:
        return self.master.url

    def synced(self) -> bool:
        """Every running replica has its link to the master up and acknowledges writes."""
        running = [r for r in self.replicas if r.process is not None]
        if not all("master_link_status:up" in _command(r.port, "INFO", "replication") for r in running):
            return False
        # The link being up is not enough: after a diskless full sync the master streams writes to a
        # replica only from that replica's first REPLCONF ACK, sent by its once-a-second cron.  Until
        # then a WAIT cannot count it and runs to its timeout (seen: 1 s for the first commit of 6 in
        # 20 fresh pairs).  So one write must be acknowledged, on one connection (WAIT counts the
        # replicas holding this connection's last write).
        import redis  # (here: mvactors.testing imports without the redis extra)

        with redis.Redis(host="127.0.0.1", port=self.master.port) as probe:
            pipe = probe.pipeline(transaction=False)
            pipe.set("mvactors-test:replication-probe", "1")
            pipe.execute_command("WAIT", len(running), 50)
            pipe.delete("mvactors-test:replication-probe")
            return int(pipe.execute()[1]) >= len(running)

    def start(self) -> ReplicatedRedis:
        """Start the master and the replicas; return once every replica is in sync."""
        self.master.start()
        for replica in self.replicas:
            replica.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.synced():
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"the replicas of {self.url} did not sync within {_START_TIMEOUT:g} s")
            time.sleep(0.02)  # the sync runs on the servers' schedule; nothing to wait on
        return self

    def close(self) -> None:
        """Stop every node and delete their files."""
        for node in (*self.replicas, self.master):
            node.close()



class _UrlContext:
    """A sync and async context manager around a server that yields its URL."""

    def __init__(self, server: RedisServer | RedisCluster) -> None:
        self.server = server

    def __enter__(self) -> str:
        self.server.__enter__()
        return self.server.url

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.close()

    async def __aenter__(self) -> str:
        await anyio.to_thread.run_sync(self.server.__enter__)
        return self.server.url

    async def __aexit__(self, *exc: Any) -> None:
        await anyio.to_thread.run_sync(self.server.close)


def redis_server(*, maxmemory: str | None = None, maxmemory_policy: str = "noeviction") -> _UrlContext:
    """Start a private ``redis-server`` (AOF on, ``appendfsync always``); yields ``redis://...`` URL.

    Works as ``with`` and ``async with``; the server and its files are gone afterwards.
    ``maxmemory`` (``"2mb"``) caps its memory; ``maxmemory_policy`` other than the default
    ``noeviction`` is for testing that mvactors refuses it.  Use :class:`RedisServer`
    directly to kill and restart it.
    """
    return _UrlContext(RedisServer(maxmemory=maxmemory, maxmemory_policy=maxmemory_policy))


def redis_cluster(masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 5000) -> _UrlContext:
    """Start a private Redis Cluster of ``masters`` masters with ``replicas`` replicas each.

    Yields its ``redis+cluster://...`` URL; see :class:`RedisCluster` for ``node_timeout_ms``.
    """
    return _UrlContext(RedisCluster(masters, replicas, node_timeout_ms=node_timeout_ms))


__all__ = ["RedisCluster", "RedisServer", "RedisUnavailable", "ReplicatedRedis", "free_port", "redis_cluster",
           "redis_server", "redis_server_binary"]
