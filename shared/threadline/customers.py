"""Customer profiles through the API: linking identities, merging, profile attributes.

Every operation here takes the id the caller used and follows a merged customer's
alias to the survivor first, so ids a CRM stored before a merge keep working.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from threadline.dal.base import Delete, Put, Update, Write, WriteCancelled, put_once
from threadline.errors import Conflict, NotFound, StorageUnavailable
from threadline.items import (
    EXTERNAL_ID_SK,
    IDENT_SK,
    PROFILE_SK,
    customer_pk,
    external_id_item,
    external_id_pk,
    identity_item,
    identity_pk,
)
from threadline.logs import logger
from threadline.merge import MERGED, Merger, MergeResult
from threadline.model import Model
from threadline.outbound_store import OutboundStore
from threadline.schema import Customer, Identity, utc_now
from threadline.store import Profile

_ATTEMPTS = 5
MAX_TAGS = 50
MAX_TAG_LENGTH = 64
MAX_EXTERNAL_ID_LENGTH = 256
MAX_EXTERNAL_IDS = 20
_SYSTEM = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 5646 (BCP 47) well-formed tags: language[-extlang][-script][-region]*variant
# *extension [-privateuse], or a private-use tag alone. Grandfathered tags are refused.
_BCP47 = re.compile(
    r"^(?P<language>[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4,8})"
    r"(?:-(?P<script>[a-z]{4}))?"
    r"(?:-(?P<region>[a-z]{2}|[0-9]{3}))?"
    r"(?P<rest>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*"
    r"(?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*"
    r"(?:-x(?:-[a-z0-9]{1,8})+)?)$"
    r"|^(?P<private>x(?:-[a-z0-9]{1,8})+)$"
)


def canonical_language(tag: str) -> str:
    """A well-formed BCP 47 tag in its conventional case (``pt-br`` -> ``pt-BR``)."""
    text = tag.strip().lower()
    match = _BCP47.match(text) if len(text) <= 64 else None
    if match is None:
        raise ValueError("language must be a BCP 47 tag such as en, pt-BR or zh-Hant-TW")
    if match.group("private"):
        return text
    out = match.group("language")
    if match.group("script"):
        out += "-" + match.group("script").title()
    if match.group("region"):
        out += "-" + match.group("region").upper()
    return out + match.group("rest")


class ProfilePatch(Model):
    """``PATCH /v1/customers/{id}``: JSON merge patch (RFC 7396) of the profile.

    A field left out is unchanged; ``null`` removes it. ``tags`` replaces the whole
    list (arrays are replaced in a merge patch); ``external_ids`` is merged per system,
    ``null`` for a system removing that id.
    """

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    language: str | None = Field(default=None, description="BCP 47, e.g. pt-BR")
    tags: list[str] | None = Field(default=None, max_length=MAX_TAGS)
    external_ids: dict[str, str | None] | None = Field(
        default=None, description='CRM system -> id there, e.g. {"salesforce": "003..."}'
    )

    @field_validator("display_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or _CONTROL.search(value)):
            raise ValueError("display_name must be printable text")
        return value.strip() if value is not None else None

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return canonical_language(value) if value is not None else None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        tags: list[str] = []
        for raw in value:
            tag = raw.strip()
            if not tag or len(tag) > MAX_TAG_LENGTH or _CONTROL.search(tag):
                raise ValueError(f"tags are 1-{MAX_TAG_LENGTH} printable characters")
            if tag not in tags:
                tags.append(tag)
        return tags

    @field_validator("external_ids")
    @classmethod
    def _external_ids(cls, value: dict[str, str | None] | None) -> dict[str, str | None] | None:
        if value is None:
            return None
        if len(value) > MAX_EXTERNAL_IDS:
            raise ValueError(f"at most {MAX_EXTERNAL_IDS} external ids")
        cleaned: dict[str, str | None] = {}
        for system, external_id in value.items():
            if not _SYSTEM.match(system):
                raise ValueError(
                    "an external id's system is lower-case letters, digits, '_', '.', '-' "
                    "(e.g. salesforce, hubspot)"
                )
            if external_id is not None:
                external_id = external_id.strip()
                if (
                    not external_id
                    or len(external_id) > MAX_EXTERNAL_ID_LENGTH
                    or _CONTROL.search(external_id)
                ):
                    raise ValueError(
                        f"an external id is 1-{MAX_EXTERNAL_ID_LENGTH} printable characters"
                    )
            cleaned[system] = external_id
        return cleaned

    def changes(self) -> dict[str, Any]:
        """The fields the patch names, ``None`` meaning remove."""
        return {name: getattr(self, name) for name in self.model_fields_set}


def parse_external_id(text: str) -> tuple[str, str]:
    """``system:id`` (the lookup's query form) as (system, id); ValueError if malformed."""
    system, sep, value = text.partition(":")
    if not sep or not _SYSTEM.match(system) or not value.strip():
        raise ValueError("external_id must look like system:id, e.g. salesforce:0035e00000AbCdE")
    return system, value.strip()


def patch_writes(
    customer: Customer, changes: dict[str, Any]
) -> tuple[list[Write], dict[int, tuple[str, str]]]:
    """The writes of a profile patch, and which write claims which external id."""
    customer_id = customer.id
    writes: list[Write] = []
    claims: dict[int, tuple[str, str]] = {}
    names: dict[str, str] = {}
    values: dict[str, Any] = {":cid": customer_id}
    sets: list[str] = []
    removes: list[str] = []
    conditions = ["attribute_exists(pk)", "attribute_not_exists(merge_state)"]
    for field_name in ("display_name", "language", "tags"):
        if field_name not in changes:
            continue
        names[f"#{field_name}"] = field_name
        if changes[field_name] is None:
            removes.append(f"#{field_name}")
        else:
            sets.append(f"#{field_name} = :{field_name}")
            values[f":{field_name}"] = changes[field_name]
    if "external_ids" in changes:
        current = dict(customer.external_ids)
        wanted = dict(current)
        for system, external_id in (changes["external_ids"] or {}).items():
            if external_id is None:
                wanted.pop(system, None)
            else:
                wanted[system] = external_id
        if changes["external_ids"] is None:
            wanted = {}
        # Unique per system and id: another customer holding one wins.
        ours = "attribute_not_exists(pk) OR customer_id = :cid"
        for system in sorted(set(current) | set(wanted)):
            old, new = current.get(system), wanted.get(system)
            if old == new:
                continue
            if new is not None:
                claims[len(writes)] = (system, new)
                writes.append(
                    Put(
                        external_id_item(system, new, customer_id),
                        condition=ours,
                        values={":cid": customer_id},
                        return_old_on_conflict=True,
                    )
                )
            if old is not None:
                key = (external_id_pk(system, old), EXTERNAL_ID_SK)
                writes.append(Delete(key, condition=ours, values={":cid": customer_id}))
        names["#external_ids"] = "external_ids"
        if wanted:
            sets.append("#external_ids = :external_ids")
            values[":external_ids"] = wanted
        else:
            removes.append("#external_ids")
        # Pin the ids we read, so a concurrent patch cannot orphan a pointer.
        if current:
            values[":id_count"] = len(current)
            conditions.append("size(#external_ids) = :id_count")
            for index, (system, external_id) in enumerate(sorted(current.items())):
                names[f"#s{index}"] = system
                values[f":s{index}"] = external_id
                conditions.append(f"#external_ids.#s{index} = :s{index}")
        else:
            conditions.append("attribute_not_exists(#external_ids)")
    update = ""
    if sets:
        update += "SET " + ", ".join(sets)
    if removes:
        update += " REMOVE " + ", ".join(removes)
    conditions.append("customer_id = :cid")
    profile = Update(
        key=(customer_pk(customer_id), PROFILE_SK),
        expression=update.strip(),
        condition=" AND ".join(conditions),
        names=names,
        values=values,
    )
    return [*writes, profile], claims


@dataclass(frozen=True)
class LinkResult:
    customer: Customer
    created: bool
    """The identity was new to this customer (False: it had it, or it came by a merge)."""
    merge: MergeResult | None = None


class CustomerStore(OutboundStore):
    """The outbound store plus profile writes: link, merge, patch, external ids."""

    # ------------------------------------------------------------------ reads

    def live_profile(self, customer_id: str) -> Profile:
        """The profile ``customer_id`` resolves to (following merges); NotFound if none."""
        profile = self.resolve_profile(customer_id, consistent=True)
        if profile is None:
            raise NotFound("no such customer")
        return profile

    def find_by_external_id(self, system: str, external_id: str) -> Customer | None:
        item = self.get_item(external_id_pk(system, external_id), EXTERNAL_ID_SK)
        if item is None:
            return None
        profile = self.resolve_profile(str(item["customer_id"]))
        return profile.customer if profile else None

    # ------------------------------------------------------------------ link

    def link_identity(
        self,
        customer_id: str,
        identity: Identity,
        *,
        merge: bool = False,
        force: bool = False,
        deadline: float | None = None,
    ) -> LinkResult:
        """Give ``identity`` to the customer; 409 when another customer has it, unless
        ``merge``, which merges that customer into this one."""

        for _ in range(_ATTEMPTS):
            profile = self.live_profile(customer_id)
            customer_id = profile.customer.id
            owner_item = self.get_item(identity_pk(identity), IDENT_SK, consistent=True)
            if owner_item is not None:
                owner = self.surviving_customer_id(str(owner_item["customer_id"]))
                if owner == customer_id:
                    return LinkResult(profile.customer, created=False)
                if owner is not None:
                    if not merge:
                        raise Conflict(
                            "another customer has this identity; link with merge=true to "
                            "merge that customer into this one",
                            code="identity_linked_elsewhere",
                            details={"customer_id": owner, "identity": str(identity)},
                        )
                    result = Merger(self).merge(owner, customer_id, force=force, deadline=deadline)
                    if result.state == MERGED:
                        self._mark_linked(identity, customer_id)
                    return LinkResult(self.live_profile(customer_id).customer, False, result)
            claim = identity_item(identity, customer_id, utc_now(), link_source="api")
            joins = Update(
                key=(customer_pk(customer_id), PROFILE_SK),
                expression=(
                    "SET identities = list_append(if_not_exists(identities, :none), :identity)"
                ),
                # A merge of this customer into another may have begun.
                condition=(
                    "attribute_exists(pk) AND attribute_not_exists(merge_state) "
                    "AND NOT contains(identities, :text)"
                ),
                values={":none": [], ":identity": [str(identity)], ":text": str(identity)},
            )
            try:
                self.data.write([put_once(claim), joins])
            except WriteCancelled as cancelled:
                if cancelled.conflict:
                    time.sleep(0.01)
                    continue  # someone took the identity, or a merge began: re-read
                raise StorageUnavailable("the identity could not be linked") from cancelled
            except StorageUnavailable as exc:
                raise StorageUnavailable("the identity could not be linked") from exc
            logger.info(
                "identity linked", extra={"customer_id": customer_id, "kind": identity.kind}
            )
            return LinkResult(self.live_profile(customer_id).customer, created=True)
        raise StorageUnavailable("the identity kept changing under us; retry")

    def _mark_linked(self, identity: Identity, customer_id: str) -> None:
        """Stamp an identity a merge brought as linked by the API (customer.identity_linked)."""
        stamp = Update(
            key=(identity_pk(identity), IDENT_SK),
            expression="SET linked_at = :now, link_source = :api",
            condition="customer_id = :cid",
            values={":now": utc_now().isoformat(), ":api": "api", ":cid": customer_id},
        )
        try:
            self.data.write([stamp])
        except WriteCancelled:
            pass  # the identity moved on meanwhile: nothing to stamp
        except StorageUnavailable as exc:
            raise StorageUnavailable("the identity could not be linked") from exc

    # ------------------------------------------------------------------ merge

    def merge(
        self, target_id: str, source_id: str, *, force: bool = False, deadline: float | None = None
    ) -> MergeResult:
        """Merge ``source_id`` into ``target_id`` (both may be aliases), or continue it."""
        target = self.live_profile(target_id).customer.id
        source_profile = self.get_profile(source_id, consistent=True)
        if source_profile is None:
            raise NotFound("no such customer to merge")
        if (
            source_profile.merged_into is not None
            and self.surviving_customer_id(source_profile.merged_into) == target
        ):
            # Already merged into this survivor (maybe through a chain), or an
            # interrupted merge into it: continue that one (a no-op when done).
            return Merger(self).merge(source_id, source_profile.merged_into, deadline=deadline)
        return Merger(self).merge(source_id, target, force=force, deadline=deadline)

    # ------------------------------------------------------------------ patch

    def patch_profile(self, customer_id: str, patch: ProfilePatch) -> Customer:
        changes = patch.changes()
        for _ in range(_ATTEMPTS):
            customer = self.live_profile(customer_id).customer
            customer_id = customer.id
            if not changes:
                return customer
            writes, claims = patch_writes(customer, changes)
            try:
                self.data.write(writes)
            except WriteCancelled as cancelled:
                self._raise_if_taken(cancelled, claims, customer_id)
                if cancelled.conflict:
                    time.sleep(0.01)
                    continue
                raise StorageUnavailable("the profile could not be written") from cancelled
            except StorageUnavailable as exc:
                raise StorageUnavailable("the profile could not be written") from exc
            logger.info(
                "profile updated", extra={"customer_id": customer_id, "fields": sorted(changes)}
            )
            return self.live_profile(customer_id).customer
        raise StorageUnavailable("the profile kept changing under us; retry")

    def _raise_if_taken(
        self, cancelled: WriteCancelled, claims: dict[int, tuple[str, str]], customer_id: str
    ) -> None:
        for index, (system, external_id) in claims.items():
            if not cancelled.failed(index):
                continue
            holder = self.get_item(
                external_id_pk(system, external_id), EXTERNAL_ID_SK, consistent=True
            )
            if holder is None or holder.get("customer_id") == customer_id:
                continue  # released meanwhile: the retry will claim it
            raise Conflict(
                "another customer holds this external id",
                code="external_id_taken",
                details={
                    "customer_id": self.surviving_customer_id(str(holder["customer_id"])),
                    "system": system,
                    "external_id": external_id,
                },
            )


# ---------------------------------------------------------------------- API documents


class MergeRequest(Model):
    """``POST /v1/customers/{id}/merge``: absorb ``source_customer_id`` into ``{id}``."""

    model_config = ConfigDict(extra="forbid")

    source_customer_id: str = Field(min_length=1, max_length=64)
    force: bool = Field(
        default=False,
        description="merge even when the two carry different ids for one CRM system "
        "(the survivor keeps its own)",
    )


class MergeStatus(Model):
    surviving_customer_id: str
    absorbed_customer_id: str
    state: str = Field(description="merged, or merging: POST the same request again to finish")
    moved_items: int = Field(description="items this call moved")
    waiting_items: int = Field(description="replies being sent right now, moved by a re-run")

    @classmethod
    def of(cls, result: MergeResult) -> MergeStatus:
        return cls(
            surviving_customer_id=result.surviving_customer_id,
            absorbed_customer_id=result.absorbed_customer_id,
            state=result.state,
            moved_items=result.moved_items,
            waiting_items=result.waiting_items,
        )
