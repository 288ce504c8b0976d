"""``GET /v1/ingest-key``: what a producer needs to seal personal fields for its tenant.

Any valid API key may ask, whatever its scopes: the public key is no secret (it opens
nothing), but the answer also holds the tenant's routing key, which only the tenant's own
systems should have (it lets them compute message keys), and the key tells whose routing key
to give. The current key is read per request, so a rotation shows at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from psycopg.sql import SQL, Identifier
from pydantic import BaseModel, Field

from ledger.keys.crypto_ingest import IngestPublicKey, routing_key, split_public_key_column
from ledger.keys.ingest_keys import key_document
from ledger.keys.ingest_keys_postgres import CURRENT_KEY
from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.problems import PROBLEM_RESPONSES, Unavailable

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
Ctx = Annotated[ApiContext, Depends(context)]
AnyKey = Annotated[Principal, Depends(require(*Scope))]


class IngestKey(BaseModel):
    """The ledger's current ingest public key, and the caller's tenant routing key."""

    tenant: str
    key_id: str = Field(description="Goes into every Sealed value as `key_id`.")
    algorithm: str = Field(
        description="What `public_key` is: HPKE-X25519-ingest-v1 (an X25519 key for RFC 9180 "
        "HPKE with HKDF-SHA256 and AES-256-GCM). Sealing is described in the producer contract."
    )
    public_key: str = Field(
        description="Raw X25519 public key (32 bytes), base64: for sessions of scheme "
        "HPKE-X25519-session-v2 (and v1 sealing)."
    )
    hybrid_public_key: str | None = Field(
        default=None,
        description="ML-KEM-768 encapsulation key (1,184 bytes) followed by an X25519 public key "
        "(32 bytes), base64: for sessions of scheme HPKE-MLKEM768X25519-session-v2. Absent on "
        "key pairs made before sealed ingest v2.",
    )
    routing_key: str = Field(
        description="HMAC key (32 bytes, base64) for the ingest topic's message keys."
    )
    created_at: datetime = Field(description="When this key pair became current.")


@router.get(
    "/ingest-key", response_model=IngestKey, response_model_exclude_none=True, tags=["producers"]
)
async def ingest_key(ctx: Ctx, who: AnyKey) -> IngestKey:
    """The key producers of the caller's tenant seal personal fields to. Fetch it when a
    producer starts and at least daily; a retired key stops working after the ingest
    retention."""
    query = SQL(CURRENT_KEY).format(schema=Identifier(ctx.settings.database_schema))
    async with ctx.connection() as conn:
        row = await (await conn.execute(query)).fetchone()
    if row is None:
        raise Unavailable("the ledger has no ingest key yet; try again shortly")
    _, lookup_key = ctx.settings.require_keys()
    x25519_key, hybrid_key = split_public_key_column(bytes(row["public_key"]))
    key = IngestPublicKey(
        who.tenant,
        row["key_id"],
        x25519_key,
        routing_key(lookup_key, who.tenant),
        hybrid_public_key=hybrid_key,
    )
    return IngestKey.model_validate(key_document(key, row["created_at"]))
