from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FieldFilter(_message.Message):
    __slots__ = ("field", "any", "gte", "lte")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    GTE_FIELD_NUMBER: _ClassVar[int]
    LTE_FIELD_NUMBER: _ClassVar[int]
    field: str
    any: _containers.RepeatedScalarFieldContainer[str]
    gte: float
    lte: float
    def __init__(self, field: _Optional[str] = ..., any: _Optional[_Iterable[str]] = ..., gte: _Optional[float] = ..., lte: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "user_id", "k", "filters", "experiment", "request_id", "arm_override", "session_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARM_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    query: str
    user_id: str
    k: int
    filters: _containers.RepeatedCompositeFieldContainer[FieldFilter]
    experiment: str
    request_id: str
    arm_override: str
    session_id: str
    def __init__(self, query: _Optional[str] = ..., user_id: _Optional[str] = ..., k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[FieldFilter, _Mapping]]] = ..., experiment: _Optional[str] = ..., request_id: _Optional[str] = ..., arm_override: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("text", "image", "profile", "lexical")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_FIELD_NUMBER: _ClassVar[int]
    text: float
    image: float
    profile: float
    lexical: float
    def __init__(self, text: _Optional[float] = ..., image: _Optional[float] = ..., profile: _Optional[float] = ..., lexical: _Optional[float] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("item_id", "score", "explanation", "category", "brand", "price", "in_stock", "found_by", "team")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    FOUND_BY_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    explanation: Explanation
    category: str
    brand: str
    price: float
    in_stock: bool
    found_by: str
    team: str
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., explanation: _Optional[_Union[Explanation, _Mapping]] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., price: _Optional[float] = ..., in_stock: _Optional[bool] = ..., found_by: _Optional[str] = ..., team: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "request_id", "experiment", "arm", "model_version", "personalized", "degraded")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    request_id: str
    experiment: str
    arm: str
    model_version: str
    personalized: bool
    degraded: bool
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., request_id: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ..., model_version: _Optional[str] = ..., personalized: _Optional[bool] = ..., degraded: _Optional[bool] = ...) -> None: ...

class BatchSearchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class BatchSearchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("positive_ids", "negative_ids", "k", "filters", "experiment", "request_id", "arm_override", "user_id", "session_id")
    POSITIVE_IDS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_IDS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARM_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    positive_ids: _containers.RepeatedScalarFieldContainer[str]
    negative_ids: _containers.RepeatedScalarFieldContainer[str]
    k: int
    filters: _containers.RepeatedCompositeFieldContainer[FieldFilter]
    experiment: str
    request_id: str
    arm_override: str
    user_id: str
    session_id: str
    def __init__(self, positive_ids: _Optional[_Iterable[str]] = ..., negative_ids: _Optional[_Iterable[str]] = ..., k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[FieldFilter, _Mapping]]] = ..., experiment: _Optional[str] = ..., request_id: _Optional[str] = ..., arm_override: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class SearchByPhotoRequest(_message.Message):
    __slots__ = ("photo", "k", "filters", "experiment", "request_id", "arm_override", "user_id", "session_id")
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARM_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    photo: bytes
    k: int
    filters: _containers.RepeatedCompositeFieldContainer[FieldFilter]
    experiment: str
    request_id: str
    arm_override: str
    user_id: str
    session_id: str
    def __init__(self, photo: _Optional[bytes] = ..., k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[FieldFilter, _Mapping]]] = ..., experiment: _Optional[str] = ..., request_id: _Optional[str] = ..., arm_override: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "viewed_ids", "k", "filters", "exclude_purchased", "experiment", "request_id", "arm_override", "session_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWED_IDS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PURCHASED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARM_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    viewed_ids: _containers.RepeatedScalarFieldContainer[str]
    k: int
    filters: _containers.RepeatedCompositeFieldContainer[FieldFilter]
    exclude_purchased: bool
    experiment: str
    request_id: str
    arm_override: str
    session_id: str
    def __init__(self, user_id: _Optional[str] = ..., viewed_ids: _Optional[_Iterable[str]] = ..., k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[FieldFilter, _Mapping]]] = ..., exclude_purchased: _Optional[bool] = ..., experiment: _Optional[str] = ..., request_id: _Optional[str] = ..., arm_override: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...
