"""Feast definitions: Entity -> Source -> FeatureView -> FeatureService (re-exported by
``feature_repo/definitions.py`` for Feast's CLI).

The user profile is written by the stream worker through a PushSource (fresh features) and
read by the server. Its fields are declared once, in ``mrse.features.profile_schema`` (they
are ``mrse.features.profile.ProfileState``, so what is served is what the model was trained
on). FeatureServices are versioned model contracts: an A/B arm points at one.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, FileSource, PushSource, ValueType

from mrse.features.profile_schema import (
    ENTITY_KEY,
    MODEL_FIELDS,
    PUSH_SOURCE,
    TIMESTAMP,
    VIEW,
    feast_fields,
)

user = Entity(
    name="user", join_keys=[ENTITY_KEY], value_type=ValueType.STRING, description="a shopper"
)

user_profile_source = FileSource(
    name="user_profile_source",
    path="data/user_profiles.parquet",
    timestamp_field=TIMESTAMP,
)
user_profile_push = PushSource(name=PUSH_SOURCE, batch_source=user_profile_source)

user_profile_fresh = FeatureView(
    name=VIEW,
    entities=[user],
    ttl=timedelta(days=3650),
    schema=feast_fields(),  # declared once, in mrse.features.profile_schema
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
    features=[user_profile_fresh[list(MODEL_FIELDS)]],
    description="MRSE: the shopper's multi-modal profile, by user_id",
)
text_tower_v1 = FeatureService(
    name="text_tower_v1", features=[], description="text tower: reads no features"
)
