"""``cloudevents`` source: the inference-logger events the agent stored, joined into prediction rows.

A window holds the requests whose time (``ce-time``, else arrival) falls in it; each is joined with
the response of the same ``ce-id`` (whenever that arrived) and, when one exists, the Seldon feedback
for it (its truth becomes ``label_column``). A request still without a response is left out of the
window (``window.lateness`` gives responses time to arrive); a lone response is never a row.
A pair that cannot be joined (2 instances, 1 prediction; a payload the configured ``feature_names``
do not fit) or a feedback that does not fit its event is skipped alone, logged and reported through
``rejected()`` (a ``bad_record`` data-quality finding naming the event); the rest of the window is read.
The rows come from the agent's state store: the runner passes ``store=``, or ``state_url`` names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from sqlalchemy import ColumnElement, and_, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from config.errors import InputError, SourceQueryError, SourceUnavailable
from config.model import CloudEventsSourceConfig
from connectors.base import RejectedRecord, Rejections
from connectors.sources.inference import join, parse_feedback

if TYPE_CHECKING:
    from agent.store import Store


class CloudEventsSource:
    config_model: ClassVar[type[CloudEventsSourceConfig]] = CloudEventsSourceConfig

    def __init__(self, config: CloudEventsSourceConfig, *, timestamp_column: str | None,
                 store: Store | None = None, **_: Any) -> None:
        self.config = config
        self.timestamp_column = timestamp_column or "timestamp"
        self._own: Engine | None = None
        self._skipped = Rejections(self.describe())
        if store is not None:
            self._engine = store.engine
        elif config.state_url is not None:
            self._own = create_engine(config.state_url.get_secret_value())
            self._engine = self._own
        else:
            raise SourceQueryError("a cloudevents source needs the agent's state store (or `state_url`)")

    def describe(self) -> str:
        who = self.config.system or self.config.inference_service or "all"
        return f"cloudevents:{who}"

    def _filters(self) -> list[ColumnElement[bool]]:
        from agent.schema import InferenceEvent as E

        out: list[ColumnElement[bool]] = []
        if self.config.system is not None:
            out.append(E.system_id == self.config.system)
        if self.config.inference_service is not None:
            out.append(E.inference_service == self.config.inference_service)
        if self.config.namespace is not None:
            out.append(E.namespace == self.config.namespace)
        return out

    def _rows(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        from agent.schema import InferenceEvent as E

        cond = [*self._filters(), E.kind == "request"]
        if start is not None and end is not None:
            cond += [E.event_time >= start.astimezone(UTC), E.event_time < end.astimezone(UTC)]
        try:
            with self._engine.connect() as conn:
                requests = conn.execute(select(E.event_id, E.event_time, E.body).where(and_(*cond))
                                        .order_by(E.event_time, E.event_id)).fetchall()
                ids = [r.event_id for r in requests]
                others: dict[tuple[str, str], str] = {}
                for i in range(0, len(ids), 500):  # bounded IN lists
                    chunk = ids[i:i + 500]
                    for r in conn.execute(select(E.event_id, E.kind, E.body).where(
                            and_(*self._filters(), E.kind.in_(["response", "feedback"]), E.event_id.in_(chunk)))):
                        others[(r.event_id, r.kind)] = r.body
        except SQLAlchemyError as exc:
            raise SourceUnavailable(f"{self.describe()}: state store: {type(exc).__name__}") from exc
        rows: list[dict[str, Any]] = []
        self._skipped.clear()
        for req in requests:
            resp = others.get((req.event_id, "response"))
            if resp is None:
                continue
            try:
                joined = join(req.event_id, req.body, resp, feature_names=self.config.feature_names,
                              prediction_column=self.config.prediction_column, id_column=self.config.id_column)
            except InputError as exc:
                # each half was valid on its own (or ingest would have refused it); the pair is not
                self._skipped.add(f"event {req.event_id}", str(exc))
                continue
            truth = self._truth(req.event_id, others.get((req.event_id, "feedback")), len(joined))
            stamp = pd.Timestamp(req.event_time)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            for i, out in enumerate(joined):
                out[self.timestamp_column] = stamp
                if truth is not None:
                    out[self.config.label_column] = truth[i]
            rows.extend(joined)
        return pd.DataFrame.from_records(rows)

    def _truth(self, event_id: str, feedback: str | None, n: int) -> list[Any] | None:
        """The feedback's labels for the ``n`` rows of an event; an unusable feedback is skipped alone."""
        if feedback is None:
            return None
        try:
            truth = parse_feedback(feedback)
        except InputError as exc:
            self._skipped.add(f"feedback of event {event_id}", str(exc))
            return None
        if len(truth) != n:
            self._skipped.add(f"feedback of event {event_id}", f"{len(truth)} truth value(s) for {n} instance(s)")
            return None
        return truth

    def rejected(self) -> list[RejectedRecord]:
        return self._skipped.items()

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str]) -> pd.DataFrame:
        df = self._rows(start, end)
        return df[[c for c in columns if c in df.columns]] if not df.empty else df

    def read_all(self, *, columns: Sequence[str]) -> pd.DataFrame:
        df = self._rows(None, None)
        return df[[c for c in columns if c in df.columns]] if not df.empty else df

    def close(self) -> None:
        if self._own is not None:
            self._own.dispose()
