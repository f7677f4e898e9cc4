"""A visitor's open WebSocket connections and its frame counter, through the
data-access layer (items from ``threadline.items``; docs/storage.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from threadline.dal.base import Put, Update
from threadline.items import (
    WEBCHAT_CONNECTION_PREFIX,
    WEBCHAT_CONNECTION_SK,
    webchat_connection_items,
    webchat_connection_pk,
    webchat_pk,
    webchat_rate_sk,
    webchat_visitor_connection_sk,
)

if TYPE_CHECKING:
    from threadline.dal.base import TableAccess


@dataclass(frozen=True)
class Connection:
    connection_id: str
    visitor_id: str
    verified_identity: str | None
    name: str | None


def record_connection(
    data: TableAccess, connection: Connection, *, connected_at: datetime, expires: int
) -> None:
    """Both items of an open connection, in one transaction."""
    items = webchat_connection_items(
        connection.connection_id,
        connection.visitor_id,
        verified_identity=connection.verified_identity,
        name=connection.name,
        connected_at=connected_at,
        expires=expires,
    )
    data.write([Put(item) for item in items])


def find_connection(data: TableAccess, connection_id: str) -> Connection | None:
    item = data.get((webchat_connection_pk(connection_id), WEBCHAT_CONNECTION_SK), consistent=True)
    if item is None:
        return None
    return Connection(
        connection_id=connection_id,
        visitor_id=str(item["visitor_id"]),
        verified_identity=item.get("verified_identity"),
        name=item.get("name"),
    )


def forget_connection(data: TableAccess, visitor_id: str, connection_id: str) -> None:
    data.delete_all(
        [
            (webchat_connection_pk(connection_id), WEBCHAT_CONNECTION_SK),
            (webchat_pk(visitor_id), webchat_visitor_connection_sk(connection_id)),
        ]
    )


def open_connections(data: TableAccess, visitor_id: str) -> list[str]:
    items = data.query_all(
        webchat_pk(visitor_id),
        WEBCHAT_CONNECTION_PREFIX,
        consistent=True,
        attributes=("connection_id",),
    )
    return [str(item["connection_id"]) for item in items]


def count_frame(data: TableAccess, visitor_id: str, now: datetime) -> int:
    """Frames the visitor sent in this minute, this one included: a fixed one-minute
    window counted in the table, so every Lambda instance sees the same count."""
    window = int(now.timestamp()) // 60
    counted = data.update_returning(
        Update(
            key=(webchat_pk(visitor_id), webchat_rate_sk(window)),
            expression="ADD frames :one SET expires_at = :expires",
            values={":one": 1, ":expires": (window + 2) * 60},
        )
    )
    return int(counted["frames"])
