from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ItemUpsert(_message.Message):
    __slots__ = ("title", "description", "brand", "category", "price", "in_stock", "photo")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    title: str
    description: str
    brand: str
    category: str
    price: float
    in_stock: bool
    photo: str
    def __init__(self, title: _Optional[str] = ..., description: _Optional[str] = ..., brand: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ..., in_stock: _Optional[bool] = ..., photo: _Optional[str] = ...) -> None: ...

class ItemPatch(_message.Message):
    __slots__ = ("price", "in_stock")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    price: float
    in_stock: bool
    def __init__(self, price: _Optional[float] = ..., in_stock: _Optional[bool] = ...) -> None: ...

class ItemDelete(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CatalogEvent(_message.Message):
    __slots__ = ("event_id", "item_id", "version", "ts_ms", "upsert", "patch", "delete")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    UPSERT_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    item_id: str
    version: int
    ts_ms: int
    upsert: ItemUpsert
    patch: ItemPatch
    delete: ItemDelete
    def __init__(self, event_id: _Optional[str] = ..., item_id: _Optional[str] = ..., version: _Optional[int] = ..., ts_ms: _Optional[int] = ..., upsert: _Optional[_Union[ItemUpsert, _Mapping]] = ..., patch: _Optional[_Union[ItemPatch, _Mapping]] = ..., delete: _Optional[_Union[ItemDelete, _Mapping]] = ...) -> None: ...
