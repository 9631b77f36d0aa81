"""Real services for integration tests, each on a free loopback port, stopped by pid.

Installed by `scripts/install-services.sh` (run by `make test`); a test that needs a service
that is not installed fails with the command to run, it is never silently skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from mrse.streaming.broker import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
KAFKA_HOME = REPO / ".services" / "kafka"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ServiceError(RuntimeError):
    pass


def _require(path: Path | str | None, what: str) -> None:
    if not path or not Path(path).exists():
        raise ServiceError(f"{what} is not installed: run `bash scripts/install-services.sh`")


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Kafka:
    """Apache Kafka 2.3 with its ZooKeeper; data survives :meth:`restart`. Two listeners: open
    (``bootstrap``) and SASL/PLAIN (``sasl_bootstrap``, user ``mrse`` / ``SASL_PASSWORD``)."""

    SASL_PASSWORD = "mrse-kafka-s3cret"

    def __init__(self, root: Path) -> None:
        _require(KAFKA_HOME / "bin" / "kafka-server-start.sh", "Apache Kafka")
        self.root = root
        self.zk_port, self.port, self.sasl_port = free_port(), free_port(), free_port()
        self.zk: subprocess.Popen | None = None
        self.broker: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "zk.properties").write_text(
            f"dataDir={root / 'zk'}\nclientPort={self.zk_port}\nclientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n"
        )
        (root / "server.properties").write_text(
            f"broker.id=0\nlisteners=PLAINTEXT://127.0.0.1:{self.port},"
            f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}\n"
            "sasl.enabled.mechanisms=PLAIN\nsecurity.inter.broker.protocol=PLAINTEXT\n"
            "listener.name.sasl_plaintext.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            'username="admin" password="admin-pw" user_admin="admin-pw" '
            f'user_mrse="{self.SASL_PASSWORD}";\n'
            f"log.dirs={root / 'logs'}\nzookeeper.connect=127.0.0.1:{self.zk_port}\n"
            "offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n"
            "group.min.session.timeout.ms=1000\nnum.partitions=1\nauto.create.topics.enable=true\n"
            "zookeeper.connection.timeout.ms=15000\n"
            "log.cleaner.backoff.ms=500\n"  # compaction within a test's patience
        )
        self.env = {
            **os.environ,
            "KAFKA_HEAP_OPTS": "-Xmx512M -Xms128M",
            "LOG_DIR": str(root / "log4j"),
            # kafka-run-class.sh turns on remote JMX when this is empty, and the JVM then opens
            # an unauthenticated JMX/RMI port on every interface (for ZooKeeper too); any
            # non-empty value keeps it off
            "KAFKA_JMX_OPTS": "-Djava.awt.headless=true",
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def start(self) -> Kafka:
        if self.zk is None or self.zk.poll() is not None:
            script = KAFKA_HOME / "bin" / "zookeeper-server-start.sh"
            self.zk = subprocess.Popen(
                [str(script), str(self.root / "zk.properties")],
                env=self.env, stdout=(self.root / "zk.out").open("ab"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            wait_for_port(self.zk_port, 60)
        self.start_broker()
        return self

    def start_broker(self) -> None:
        out = self.root / "kafka.out"
        offset = out.stat().st_size if out.exists() else 0
        script = KAFKA_HOME / "bin" / "kafka-server-start.sh"
        self.broker = subprocess.Popen(
            [str(script), str(self.root / "server.properties")],
            env=self.env, stdout=out.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with out.open("rb") as f:
                f.seek(offset)
                if b"started (kafka.server.KafkaServer)" in f.read():
                    return
            if self.broker.poll() is not None:
                raise ServiceError(f"kafka exited; see {out}")
            time.sleep(0.2)
        raise ServiceError(f"kafka did not start in 120 s; see {out}")

    def stop_broker(self) -> None:
        _stop(self.broker, timeout=60)

    def restart_broker(self) -> None:
        self.stop_broker()
        self.start_broker()

    def stop(self) -> None:
        self.stop_broker()
        _stop(self.zk)


class Redis:
    """``persist``: an append-only file, so data survives :meth:`stop` + :meth:`start`."""

    def __init__(self, root: Path, persist: bool = False, password: str | None = None) -> None:
        _require(shutil.which("redis-server"), "redis-server")
        self.port = free_port()
        self.root = root
        self.persist = persist
        self.password = password
        root.mkdir(parents=True, exist_ok=True)
        self.start()

    def start(self) -> None:
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else []
        aof += ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", *aof, "--dir", str(self.root)],
            stdout=(self.root / "redis.out").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        _stop(self.proc)


class Postgres:
    """A throwaway PostgreSQL 15 cluster (trust auth, fsync off) with a ``feast`` database;
    ``password``: SCRAM authentication instead, for the user ``postgres``."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        _require(PG_BIN / "initdb", "PostgreSQL 15")
        self.port = free_port()
        # The server runs as `postgres`, which cannot enter pytest's private temp directories.
        root = Path(tempfile.mkdtemp(prefix="mrse-pg-"))
        shutil.chown(root, "postgres")
        self.root = root
        self.data = root / "pgdata"
        auth = ["--auth=trust"]
        if password is not None:
            pwfile = root / "pwfile"
            pwfile.write_text(password)
            shutil.chown(pwfile, "postgres")
            auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", *auth])
        self.start()
        self._as_postgres(
            ["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "feast"]
        )

    def start(self) -> None:
        root = self.root
        opts = f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(root / "pg.log"),
                "-w",
                "start",
            ]
        )

    def _as_postgres(self, cmd: list[str]) -> None:
        full = cmd if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *cmd]
        env = {**os.environ, "PGPASSWORD": self.password} if self.password else None
        subprocess.run(full, check=True, capture_output=True, env=env)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/feast?sslmode=disable"

    def stop(self) -> None:
        self._as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
        )
