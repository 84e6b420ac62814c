"""One object-store contract with two backends: S3 (boto3) and a local folder."""

from shared.store.base import ObjectInfo, ObjectStore, StoredObject, validate_key
from shared.store.location import open_store

__all__ = ["ObjectInfo", "ObjectStore", "StoredObject", "open_store", "validate_key"]
