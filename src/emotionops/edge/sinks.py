"""Where the edge's outbox sends window rows: the warehouse itself, or the inference API.

`make_sink(settings, engine_factory)`: EMOTIONOPS_INGEST_URL set -> `HttpSink` (the edge
box needs no database credentials), else `WarehouseSink`. Both are idempotent upserts on
(camera_id, window_start, label, model_version), which is what makes the outbox's
at-least-once delivery store every window exactly once. Errors: `SinkUnavailable` (down:
retried with backoff) or `SinkRejected` (configuration or data: kept, retried at the cap).

The ingest contract (the API's `POST /ingest` implements exactly this)
---------------------------------------------------------------------
Request: `POST <EMOTIONOPS_INGEST_URL>` (the endpoint's full URL, e.g.
`https://api.example/ingest`), headers `Authorization: Bearer <EMOTIONOPS_INGEST_TOKEN>`
(none when no token is configured: local use only) and `Content-Type: application/json`,
body `{"windows": [row, ...]}` with 1 to `edge.outbox.windows_per_send` (default 100) rows. Each
row has exactly these keys (aggregates only: never a frame, crop, box or embedding):

    camera_id        string, 1-64 characters
    window_start     string, ISO-8601 in UTC with its offset, microseconds always written,
                     e.g. "2026-11-20T12:00:05.000000+00:00"
    window_seconds   number > 0
    label            string, 1-32 characters
    count            integer >= 0 (distinct faces with this label; warehouse face_count)
    mean_confidence  number, or null
    model_version    string of 1-16 characters, or null when the edge knew no version
    observations     integer >= 0 (labelled face-frames behind count)
    distinct_tracks  integer >= 0 (faces tracked in the window under that model, all labels)

Semantics: the API stores the rows with `warehouse.load_emotion_events` (an upsert on the
key; a null model_version is stored as warehouse.schema.UNKNOWN_MODEL_VERSION), all rows of
one request in one transaction. The edge re-sends a batch whose reply it did not get, so a
repeated request must change nothing. A request's rows have distinct keys.

Responses, and what the edge does:
    2xx  {"accepted": n}, n = rows stored (= len(windows)): the rows are deleted from the
         outbox (2xx is the confirmation; a different n is logged as a contract warning).
    401 (no or bad token), 403 (token not allowed), 422 (a row refused; the body names it),
    and any other 4xx (404: wrong URL, 413: batch too big...): a configuration or data
         error; logged as such, rows kept, retried every edge.outbox.backoff_max_s.
    408, 429, 5xx (503 when the warehouse is down), connection errors, timeouts: retried
         with capped exponential backoff and jitter.
    3xx is not followed (the token must not go elsewhere): treated as a configuration error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emotionops.edge.outbox import Sink, SinkRejected, SinkUnavailable

if TYPE_CHECKING:
    from pydantic import SecretStr
    from sqlalchemy import Engine

    from emotionops.params import OutboxParams
    from emotionops.settings import Settings

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {408, 425, 429}


def _transient(exc: BaseException) -> bool:
    """Whether a warehouse error means 'down or busy' rather than 'refused'."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

    from emotionops.warehouse import WarehouseTimeout

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen,
            WarehouseTimeout
            | OperationalError
            | InterfaceError
            | DisconnectionError
            | TimeoutError
            | OSError,
        ):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class WarehouseSink:
    """Rows -> `emotion_event` with `load_emotion_events`, one transaction per batch.

    Takes an Engine, or a callable making one (e.g. `lambda: open_warehouse(settings)`), which
    is called at the first send and again after it failed: an edge that starts while the
    database is down queues its rows instead of failing to start.
    """

    def __init__(self, engine: Engine | Callable[[], Engine]) -> None:
        from sqlalchemy import Engine

        self._engine: Engine | None = engine if isinstance(engine, Engine) else None
        self._factory = None if isinstance(engine, Engine) else engine

    def send(self, rows: list[dict[str, Any]]) -> None:
        from emotionops.warehouse import WarehouseError, load_emotion_events

        try:
            if self._engine is None:
                assert self._factory is not None
                self._engine = self._factory()
            load_emotion_events(self._engine, rows)
        except WarehouseError as exc:
            if _transient(exc):
                raise SinkUnavailable(
                    f"the warehouse is unavailable, {len(rows)} rows stay queued: {exc}"
                ) from exc
            raise SinkRejected(f"the warehouse refused {len(rows)} rows: {exc}") from exc

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class HttpSink:
    """Rows -> the inference API's `POST /ingest` (the contract in this module's docstring)."""

    def __init__(
        self, url: str, token: str | SecretStr | None = None, timeout: float = 10.0
    ) -> None:
        import httpx

        self.url = url
        secret = token.get_secret_value() if hasattr(token, "get_secret_value") else token
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, follow_redirects=False)

    def send(self, rows: list[dict[str, Any]]) -> None:
        import httpx

        try:
            reply = self._client.post(self.url, json={"windows": rows})
        except httpx.TransportError as exc:  # refused, reset, DNS, timeouts
            raise SinkUnavailable(
                f"cannot reach the ingest API at {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        status = reply.status_code
        if 200 <= status < 300:
            self._check_accepted(reply, len(rows))
            return
        detail = reply.text[:300].strip()
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise SinkUnavailable(f"the ingest API at {self.url} answered {status}: {detail}")
        if status in (401, 403):
            raise SinkRejected(
                f"the ingest API at {self.url} refused the token ({status}): check "
                f"EMOTIONOPS_INGEST_TOKEN; {detail}"
            )
        if status == 422:
            raise SinkRejected(f"the ingest API at {self.url} refused the rows (422): {detail}")
        if 300 <= status < 400:
            where = reply.headers.get("location", "?")
            raise SinkRejected(
                f"the ingest API at {self.url} redirects ({status}) to {where}: set "
                "EMOTIONOPS_INGEST_URL to the final URL"
            )
        raise SinkRejected(f"the ingest API at {self.url} answered {status}: {detail}")

    def _check_accepted(self, reply: Any, sent: int) -> None:
        try:
            accepted = reply.json().get("accepted")
        except (ValueError, AttributeError):
            accepted = None
        if accepted != sent:
            log.warning(
                "ingest API at %s confirmed %d rows with accepted=%r (contract: %d)",
                self.url,
                sent,
                accepted,
                sent,
            )

    def close(self) -> None:
        self._client.close()


def make_sink(
    settings: Settings,
    engine_factory: Callable[[], Engine] | None = None,
    params: OutboxParams | None = None,
) -> Sink:
    """The sink the settings ask for: the API when EMOTIONOPS_INGEST_URL is set, else the
    warehouse (through `engine_factory`, default `open_warehouse(settings)`, made lazily)."""
    from emotionops.params import OutboxParams

    params = params or OutboxParams()
    if settings.ingest_url:
        return HttpSink(settings.ingest_url, settings.ingest_token, params.send_timeout_s)
    if engine_factory is None:

        def engine_factory() -> Engine:
            from emotionops.warehouse import open_warehouse

            return open_warehouse(settings)

    return WarehouseSink(engine_factory)
