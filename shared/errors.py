"""Domain exceptions: each says what was wrong in words a user can act on.

The edges turn them into HTTP 4xx bodies or failure records; nothing swallows them.
"""

import reprlib

# What a message may quote of a caller's input: enough to recognise it, never all of it
# (a request with a 1 MB name must not get a 1 MB error back, nor a deep one a RecursionError).
_QUOTE = reprlib.Repr(
    maxlevel=2, maxlist=4, maxtuple=4, maxdict=4, maxset=4, maxstring=64, maxlong=40, maxother=64
)


def quoted(value: object) -> str:
    """A short repr of `value` for an error message: long strings, lists and numbers cut."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        # reprlib would format every digit before cutting (and cannot past 4,300 of them):
        # count them from the bit length instead, exact after one comparison.
        digits = (abs(value).bit_length() - 1) * 30103 // 100000 + 1
        digits += abs(value) >= 10**digits
        return f"<a number of {digits} digits>"
    try:
        return _QUOTE.repr(value)
    except ValueError:  # an int beyond Python's 4,300-digit str() limit, deep in a list
        return "<a number too long to show>"


class MlopsError(Exception):
    """Base of every error this project raises on purpose."""


class InvalidKey(MlopsError):
    """An object key that could escape its store or is malformed."""


class ObjectNotFound(MlopsError):
    """The object store has no object at the key asked for."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object at key {key!r}")
        self.key = key


class ObjectVersionNotFound(ObjectNotFound):
    """The object store has no such version of the object (deleted, or never existed)."""

    def __init__(self, key: str, version_id: str) -> None:
        MlopsError.__init__(self, f"no version {version_id[:80]!r} of the object at key {key!r}")
        self.key = key
        self.version_id = version_id


class PreconditionFailed(MlopsError):
    """A conditional write lost: the object exists, or changed since it was read."""

    def __init__(self, key: str, condition: str) -> None:
        super().__init__(f"conditional write of {key!r} failed: {condition}")
        self.key = key
        self.condition = condition


class StoreConfigError(MlopsError):
    """The store location (MLOPS_STORE) cannot be understood."""


class StoreNotTrusted(MlopsError):
    """The store does not keep a guarantee the registry relies on (see `mlops store check`)."""


class ConditionRefused(StoreNotTrusted):
    """The store refused a conditional write whose condition held: a refusal, not a lost race."""

    def __init__(self, store: str, key: str, detail: str) -> None:
        super().__init__(
            f"the store {store} refused a conditional write of {key!r} whose condition held"
            f" ({detail}): it cannot do compare-and-swap, so the registry cannot be kept there;"
            " run `mlops store check` for what it supports"
        )
        self.key = key


class SpecError(MlopsError):
    """A model spec is invalid; the message names the field."""


class DataError(MlopsError):
    """A dataset cannot be used for training; the message names the column or row."""


class ExportError(MlopsError):
    """A trained pipeline could not be exported to ONNX, or its export disagrees with it."""


class RegistryError(MlopsError):
    """A registry operation is impossible (unknown model, version or alias)."""


class ModelNotFound(RegistryError):
    """No model of that name has a registry record."""


class VersionNotFound(RegistryError):
    """The model has no such version or alias."""


class BadRequest(MlopsError):
    """A prediction request that cannot be served as sent; the message names the field."""


class PayloadTooLarge(BadRequest):
    """A request body or batch beyond the limits of the serving function."""


class ModelNotReady(RegistryError):
    """The model exists in name only: no version can serve (e.g. its training failed)."""


class ArtifactRejected(MlopsError):
    """A version's artifact does not match its recorded hash; it is never served."""
