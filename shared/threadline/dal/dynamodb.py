"""The one module that speaks DynamoDB: plans (``threadline.dal.base``) in, requests out.

Items arrive as plain Python values and are serialized here; a refused condition
becomes :class:`~threadline.dal.base.WriteCancelled`, any other failure of the table
:class:`~threadline.errors.StorageUnavailable`, so the logic above never sees a
botocore exception or a request dict.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from threadline import aws
from threadline.dal.base import (
    ConditionCheck,
    Delete,
    Key,
    Page,
    Put,
    Update,
    Write,
    WriteCancelled,
)
from threadline.errors import StorageUnavailable
from threadline.items import decode_cursor, encode_cursor, from_item, to_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_CONDITION_FAILED = "ConditionalCheckFailedException"


class DynamoTable:
    """:class:`~threadline.dal.base.TableAccess` over one DynamoDB table."""

    def __init__(self, table: str, *, dynamodb: DynamoDBClient | None = None) -> None:
        self.table = table
        self._dynamodb = dynamodb

    @property
    def dynamodb(self) -> DynamoDBClient:
        if self._dynamodb is None:
            self._dynamodb = aws.dynamodb()
        return self._dynamodb

    # ----------------------------------------------------------------- reads

    def get(
        self, key: Key, *, consistent: bool = False, attributes: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": _key(key),
            "ConsistentRead": consistent,
            **_projection(attributes),
        }
        with _unavailable("the table could not be read"):
            response = self.dynamodb.get_item(**request)
        return from_item(response["Item"]) if "Item" in response else None

    def get_many(
        self, keys: Sequence[Key], *, consistent: bool = False, attributes: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The items of up to 100 keys that exist, in one BatchGetItem (no order)."""
        request: dict[str, Any] = {
            "Keys": [_key(key) for key in keys],
            "ConsistentRead": consistent,
            **_projection(attributes),
        }
        with _unavailable("the table could not be read"):
            response = self.dynamodb.batch_get_item(RequestItems={self.table: request})  # type: ignore[dict-item]
        return [from_item(raw) for raw in response.get("Responses", {}).get(self.table, [])]

    def newest_first(
        self,
        pk: str,
        prefix: str,
        *,
        limit: int,
        cursor: str | None = None,
        attributes: Sequence[str] = (),
        consistent: bool = False,
    ) -> Page:
        """One page newest first; the cursor is the codec of ``threadline.items``."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": consistent,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": to_item({":pk": pk, ":prefix": prefix}),
            "ScanIndexForward": False,
            "Limit": limit,
            **_projection(attributes),
        }
        if cursor:
            query["ExclusiveStartKey"] = _key((pk, decode_cursor(cursor, prefix=prefix)))
        with _unavailable("the table could not be read"):
            response = self.dynamodb.query(**query)
        last = response.get("LastEvaluatedKey")
        return Page(
            items=[from_item(raw) for raw in response.get("Items", [])],
            next_cursor=encode_cursor(str(from_item(last)["sk"])) if last else None,
        )

    def query_all(
        self,
        pk: str,
        prefix: str = "",
        *,
        consistent: bool = False,
        attributes: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        return [
            item
            for page in self.query_pages(pk, prefix, consistent=consistent, attributes=attributes)
            for item in page
        ]

    def query_pages(
        self,
        pk: str,
        prefix: str = "",
        *,
        page_size: int | None = None,
        consistent: bool = False,
        attributes: Sequence[str] = (),
    ) -> Iterator[list[dict[str, Any]]]:
        """The items under ``pk`` (sk starting with ``prefix``) page by page, oldest
        first; each page is read when the one before it has been used."""
        condition = "pk = :pk AND begins_with(sk, :prefix)" if prefix else "pk = :pk"
        values = {":pk": pk, ":prefix": prefix} if prefix else {":pk": pk}
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_item(values),
            "ConsistentRead": consistent,
            **_projection(attributes),
        }
        if page_size:
            query["Limit"] = page_size
        return self._pages(query)

    def query_index(
        self, index: str, condition: str, values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Every item of a secondary index matching a key condition."""
        query = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_item(values),
        }
        return [item for page in self._pages(query) for item in page]

    def _pages(self, query: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        while True:
            with _unavailable("the table could not be read"):
                response = self.dynamodb.query(**query)
            yield [from_item(raw) for raw in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # ----------------------------------------------------------------- writes

    def write(self, writes: Sequence[Write]) -> None:
        from botocore.exceptions import ClientError

        if not writes:
            return
        if len(writes) == 1 and not isinstance(writes[0], ConditionCheck):
            self._write_one(writes[0])
            return
        with _unavailable("the table could not be written"):
            try:
                self.dynamodb.transact_write_items(
                    TransactItems=[self._transact_item(w) for w in writes]  # type: ignore[misc]
                )
            except ClientError as exc:
                response: dict[str, Any] = dict(exc.response)
                reasons: list[dict[str, Any]] = list(response.get("CancellationReasons") or [])
                if not reasons:
                    raise
                codes = [reason.get("Code") for reason in reasons]
                olds = [reason.get("Item") for reason in reasons]
                raise WriteCancelled(
                    [code if code != "None" else None for code in codes],
                    [from_item(dict(old)) if old else None for old in olds],
                ) from exc

    def delete_all(self, keys: Sequence[Key]) -> None:
        """Delete many items, 25 to a batch, without conditions."""
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": _key(key)}} for key in keys[start : start + 25]]
            pending: dict[str, Any] = {self.table: requests}
            for _ in range(10):
                with _unavailable("the table could not be written"):
                    response = self.dynamodb.batch_write_item(RequestItems=pending)
                pending = dict(response.get("UnprocessedItems") or {})
                if not pending:
                    break
            else:
                raise StorageUnavailable("DynamoDB kept items unprocessed; the job is retried")

    def update_returning(self, update: Update) -> dict[str, Any]:
        response = self._write_one(update, returning=True)
        return from_item(dict(response.get("Attributes") or {}))

    def first_writer(
        self, cancelled: WriteCancelled, index: int, key: Key
    ) -> dict[str, Any] | None:
        old = cancelled.old_items[index] if index < len(cancelled.old_items) else None
        # Not every DynamoDB implementation returns the old item; then read it.
        return old if old is not None else self.get(key, consistent=True)

    def _write_one(self, write: Write, *, returning: bool = False) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        request = self._request(write)
        with _unavailable("the table could not be written"):
            try:
                if isinstance(write, Put):
                    return dict(self.dynamodb.put_item(**request))
                if isinstance(write, Delete):
                    return dict(self.dynamodb.delete_item(**request))
                if returning:
                    request["ReturnValues"] = "ALL_NEW"
                return dict(self.dynamodb.update_item(**request))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                    raise
                failure: dict[str, Any] = dict(exc.response)
                old: dict[str, Any] = failure.get("Item") or {}
                raise WriteCancelled(
                    ["ConditionalCheckFailed"], [from_item(old) if old else None]
                ) from exc

    def _transact_item(self, write: Write) -> dict[str, Any]:
        kind = {Put: "Put", Update: "Update", ConditionCheck: "ConditionCheck", Delete: "Delete"}
        return {kind[type(write)]: self._request(write)}

    def _request(self, write: Write) -> dict[str, Any]:
        request: dict[str, Any] = {"TableName": self.table}
        if isinstance(write, Put):
            request["Item"] = to_item(write.item)
            if write.return_old_on_conflict:
                request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        else:
            request["Key"] = _key(write.key)
        if isinstance(write, Update):
            request["UpdateExpression"] = write.expression
        if write.condition:
            request["ConditionExpression"] = write.condition
        names = getattr(write, "names", None)
        if names:
            request["ExpressionAttributeNames"] = names
        if write.values:
            request["ExpressionAttributeValues"] = to_item(write.values)
        return request


def _key(key: Key) -> dict[str, Any]:
    return to_item({"pk": key[0], "sk": key[1]})


def _projection(attributes: Sequence[str]) -> dict[str, Any]:
    """A projection that names every attribute, so reserved words (status) are fine."""
    if not attributes:
        return {}
    names = {f"#p{i}": name for i, name in enumerate(attributes)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """Any failure of the table but a refused condition is StorageUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise StorageUnavailable(what) from exc
