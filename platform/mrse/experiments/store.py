"""Experiment definitions in SQL (SQLAlchemy): SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    String,
    create_engine,
    delete,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from mrse.experiments.assignment import Arm, Experiment
from mrse.settings import secret, url_with_password

PASSWORD_ENV = "MRSE_EXPERIMENTS_PASSWORD"


class _Base(DeclarativeBase):
    pass


class _ExperimentRow(_Base):
    __tablename__ = "mrse_experiments"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    salt: Mapped[str] = mapped_column(String(128), default="")
    # added 2026-12 (tables made before get them: _migrate)
    unit: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    kind: Mapped[str] = mapped_column(String(16), default="ab", server_default="ab")
    arms: Mapped[list[_ArmRow]] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", order_by="_ArmRow.position"
    )


class _ArmRow(_Base):
    __tablename__ = "mrse_experiment_arms"
    experiment_name: Mapped[str] = mapped_column(
        ForeignKey("mrse_experiments.name", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))
    feature_service: Mapped[str] = mapped_column(String(128))
    index: Mapped[str] = mapped_column(String(256))
    # added 2026-12: tables made before it get the column, "dense" for every arm (_migrate)
    retrieval: Mapped[str] = mapped_column(String(16), default="dense", server_default="dense")
    experiment: Mapped[_ExperimentRow] = relationship(back_populates="arms")


class _ModelRow(_Base):
    """A model version the platform may serve: its run directory, and when the catalog worker
    finished writing its index (``ready_at``, Unix seconds; null until then)."""

    __tablename__ = "mrse_model_versions"
    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    run: Mapped[str] = mapped_column(String(1024))
    ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # where the catalog's index log stood when the version's index was written in full
    # (JSON {partition: offset}): a server filling its own copy replays from there
    log_offsets: Mapped[str | None] = mapped_column(String(4096), nullable=True)


@dataclass(frozen=True)
class ModelVersion:
    version: str
    run: str
    ready_at: float | None
    log_offsets: dict[int, int] | None = None


class ExperimentStore:
    """CRUD for experiments. ``url``: a SQLAlchemy URL (``sqlite:///experiments.db``,
    ``postgresql+psycopg://user@host/db``)."""

    def __init__(self, url: str, connect_timeout_s: int = 5) -> None:
        """A URL without a password takes it from ``$MRSE_EXPERIMENTS_PASSWORD_FILE`` (a
        Docker secret) or ``$MRSE_EXPERIMENTS_PASSWORD``: credentials stay out of configs."""
        url = url_with_password(url, secret(PASSWORD_ENV))
        # a database that hangs (not refuses) must not stall a server's start for good
        args = {"connect_timeout": connect_timeout_s} if url.startswith("postgresql") else {}
        self.engine = create_engine(url, future=True, connect_args=args)
        _Base.metadata.create_all(self.engine)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added since a table was made (create_all makes missing tables only)."""
        added = {
            _ArmRow.__tablename__: {"retrieval": "dense"},
            _ExperimentRow.__tablename__: {"unit": "user", "kind": "ab"},
        }
        for table, columns in added.items():
            have = {c["name"] for c in inspect(self.engine).get_columns(table)}
            for column, default in columns.items():
                if column not in have:
                    with self.engine.begin() as conn:
                        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} "
                                          f"VARCHAR(16) NOT NULL DEFAULT '{default}'"))  # fmt: skip

    def put(self, experiment: Experiment) -> None:
        """Create or replace an experiment (all its arms, atomically)."""
        with Session(self.engine) as s, s.begin():
            s.execute(delete(_ArmRow).where(_ArmRow.experiment_name == experiment.name))
            s.execute(delete(_ExperimentRow).where(_ExperimentRow.name == experiment.name))
            row = _ExperimentRow(name=experiment.name, salt=experiment.salt,
                                 unit=experiment.unit, kind=experiment.kind)  # fmt: skip
            row.arms = [
                _ArmRow(
                    name=a.name,
                    position=i,
                    weight=a.weight,
                    model_version=a.model_version,
                    feature_service=a.feature_service,
                    index=a.index,
                    retrieval=a.retrieval,
                )
                for i, a in enumerate(experiment.arms)
            ]
            s.add(row)

    def get(self, name: str) -> Experiment:
        """The experiment ``name``; KeyError if there is none."""
        with Session(self.engine) as s:
            row = s.get(_ExperimentRow, name)
            if row is None:
                raise KeyError(f"no experiment named {name!r}")
            return _to_experiment(row)

    def list(self) -> list[Experiment]:
        with Session(self.engine) as s:
            return [
                _to_experiment(r)
                for r in s.scalars(select(_ExperimentRow).order_by(_ExperimentRow.name))
            ]

    def delete(self, name: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(_ArmRow).where(_ArmRow.experiment_name == name))
            s.execute(delete(_ExperimentRow).where(_ExperimentRow.name == name))

    def put_model(self, version: str, run: str) -> None:
        """Register a model version (its index not ready yet)."""
        with Session(self.engine) as s, s.begin():
            s.merge(_ModelRow(version=version, run=run, ready_at=None))

    def mark_ready(self, version: str, at: float, log_offsets: dict[int, int] | None = None):
        with Session(self.engine) as s, s.begin():
            row = s.get(_ModelRow, version)
            if row is None:
                raise KeyError(f"no model version {version!r}")
            row.ready_at = at
            row.log_offsets = None if log_offsets is None else json.dumps(log_offsets)

    def models(self) -> dict[str, ModelVersion]:
        with Session(self.engine) as s:
            return {
                r.version: ModelVersion(
                    r.version,
                    r.run,
                    r.ready_at,
                    None
                    if r.log_offsets is None
                    else {int(k): v for k, v in json.loads(r.log_offsets).items()},
                )  # fmt: skip
                for r in s.scalars(select(_ModelRow))
            }

    def close(self) -> None:
        self.engine.dispose()


def _to_experiment(row: _ExperimentRow) -> Experiment:
    return Experiment(
        name=row.name,
        salt=row.salt,
        unit=row.unit,
        kind=row.kind,
        arms=tuple(
            Arm(a.name, a.weight, a.model_version, a.feature_service, a.index, a.retrieval)
            for a in row.arms
        ),
    )
