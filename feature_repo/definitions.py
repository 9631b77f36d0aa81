"""Feast definitions: Entity -> Source -> FeatureView -> FeatureService.

The user profile is written by the stream worker through a PushSource (fresh features) and
read by the server. Its fields are exactly ``mrse.features.profile.ProfileState``, so what is
served is what the model was trained on. FeatureServices are versioned model contracts: an A/B
arm points at one.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bytes, Float64, Int64, String

user = Entity(
    name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="a shopper"
)

user_profile_source = FileSource(
    name="user_profile_source",
    path="data/user_profiles.parquet",
    timestamp_field="event_timestamp",
)
user_profile_push = PushSource(name="user_profile_push", batch_source=user_profile_source)

user_profile_fresh = FeatureView(
    name="user_profile_fresh",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        # the two sums as raw little-endian float64 bytes: exact, and one value to encode and
        # decode instead of 1,664 (Feast's per-element conversion slowed the worker's writes)
        Field(name="text_sum", dtype=Bytes, description="decayed sum of text vectors, <f8"),
        Field(name="text_weight", dtype=Float64),
        Field(name="image_sum", dtype=Bytes, description="decayed sum of photo vectors, <f8"),
        Field(name="image_weight", dtype=Float64),
        Field(name="ref_ts", dtype=Float64, description="newest event time, unix seconds"),
        Field(name="history_length", dtype=Int64),
        Field(name="recent_items", dtype=Array(String)),
        Field(name="recent_ts", dtype=Array(Float64)),
        Field(name="recent_categories", dtype=Array(String)),
        Field(name="applied_event_ids", dtype=Array(String), description="idempotency window"),
    ],
    online=True,
    source=user_profile_push,
    tags={"owner": "mrse", "writer": "stream worker"},
)

# What each model version reads, by the entity keys it needs: MRSE the shopper's profile by
# user_id (all of it but the stream worker's idempotency window); the text tower nothing.
# Item attributes (category, brand, price) are served from the vector index's payload, not
# from Feast, so no item view is advertised here.
mrse_v1 = FeatureService(
    name="mrse_v1",
    features=[
        user_profile_fresh[
            [f.name for f in user_profile_fresh.schema if f.name != "applied_event_ids"]
        ]
    ],
    description="MRSE: the shopper's multi-modal profile, by user_id",
)
text_tower_v1 = FeatureService(
    name="text_tower_v1", features=[], description="text tower: reads no features"
)
