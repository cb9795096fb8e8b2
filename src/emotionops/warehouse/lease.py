"""A lease on a model's promotion, kept in the warehouse: two promotions at once (two
Airflow workers, a person and a DAG) take turns, so the second one compares against the
champion the first one left.

Why the warehouse and not MLflow: MLflow tags have no compare-and-set, so two writers can
both believe they hold a tag "lock"; the warehouse is the one transactional database every
process shares, on all three backends. Acquiring is an INSERT on the model's primary key
(the database refuses a second one) or, when the holder died, an UPDATE that takes over a
row whose lease expired; the lease expires by itself, so a crashed holder blocks nobody for
longer than `ttl_s`.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, delete, insert, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from emotionops.warehouse import schema as s
from emotionops.warehouse.db import WarehouseError, first_line

POLL_S = 0.2  # how often a waiting promotion asks again (no notification across backends)


class LeaseTimeout(WarehouseError):
    """Another promotion held the lease for longer than we were willing to wait."""


def _try_acquire(engine: Engine, model_name: str, holder: str, ttl_s: float) -> bool:
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_s)
    table = s.promotion_lock
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(table).values(model_name=model_name, holder=holder, expires_at=expires)
            )
        return True
    except IntegrityError:
        pass  # held, or left behind by a holder that died: take it over only when expired
    with engine.begin() as conn:
        taken = conn.execute(
            update(table)
            .where(and_(table.c.model_name == model_name, table.c.expires_at < now))
            .values(holder=holder, expires_at=expires)
        )
        return taken.rowcount == 1


@contextmanager
def promotion_lease(
    engine: Engine, model_name: str, ttl_s: float = 600, wait_s: float = 900
) -> Iterator[str]:
    """Hold the promotion lease of `model_name` for the block; yields the holder id."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[:128]
    deadline = time.monotonic() + wait_s
    try:
        while not _try_acquire(engine, model_name, holder, ttl_s):
            if time.monotonic() > deadline:
                raise LeaseTimeout(
                    f"another promotion of {model_name} held its lease for over {wait_s:g} s "
                    "(table promotion_lock); try again, or delete its row if its holder is gone"
                )
            time.sleep(POLL_S)  # polling: no cross-backend notification to wait on
    except SQLAlchemyError as exc:
        raise WarehouseError(
            f"cannot take the promotion lease of {model_name}: {first_line(exc)}"
        ) from exc
    try:
        yield holder
    finally:
        table = s.promotion_lock
        with engine.begin() as conn:
            conn.execute(
                delete(table).where(
                    and_(table.c.model_name == model_name, table.c.holder == holder)
                )
            )
