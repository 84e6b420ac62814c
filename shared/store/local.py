"""An ObjectStore over a local folder, with S3's semantics, for development, tests and CI.

Each object is a plain file: key ``runs/42/model.onnx`` is ``<root>/runs/42/model.onnx``.
The store keeps two folders of its own at the top of the root, which keys may not enter and
list() never shows: ``.tmp`` (staged writes) and ``.locks`` (one lock file per key ever written).
POSIX only: it relies on fcntl.flock, os.link and atomic os.replace.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from shared.errors import (
    InvalidKey,
    ObjectNotFound,
    ObjectVersionNotFound,
    PreconditionFailed,
    StoreConfigError,
)
from shared.store.base import (
    NULL_VERSION,
    ObjectInfo,
    ObjectStore,
    StoredObject,
    validate_key,
    validate_prefix,
)

TMP_DIR = ".tmp"
LOCKS_DIR = ".locks"
_RESERVED = frozenset({TMP_DIR, LOCKS_DIR})
# The longest file name ext4, tmpfs and APFS accept; S3 has no per-segment limit.
_MAX_SEGMENT_BYTES = 255
# MD5 is S3's ETag, not a security measure; saying so keeps FIPS-mode Pythons working.
_MD5 = functools.partial(hashlib.md5, usedforsecurity=False)


def _etag(hexdigest: str) -> str:
    return f'"{hexdigest}"'


# Listing a folder would otherwise read every listed file to compute its ETag (the monitoring
# check lists a window's capture objects: hundreds of MB). The MD5 is kept in an extended
# attribute beside the size and mtime it was computed for, and trusted only while both are
# unchanged; where the file system has no user attributes (or not Linux), it is computed.
_MD5_ATTRIBUTE = "user.mlops.md5"


def _remembered_md5(fd: int, status: os.stat_result) -> str | None:
    try:
        value = os.getxattr(fd, _MD5_ATTRIBUTE).decode("ascii")
    except (AttributeError, OSError, UnicodeDecodeError):
        return None
    size, mtime, digest = [*value.split(":"), "", "", ""][:3]
    if size != str(status.st_size) or mtime != str(status.st_mtime_ns) or len(digest) != 32:
        return None
    return digest


def _remember_md5(fd: int, status: os.stat_result, digest: str) -> None:
    value = f"{status.st_size}:{status.st_mtime_ns}:{digest}".encode("ascii")
    # AttributeError: not Linux; OSError: no user attributes here, or a read-only file.
    with contextlib.suppress(AttributeError, OSError):
        os.setxattr(fd, _MD5_ATTRIBUTE, value)


def _bare_etag(etag: str) -> str:
    # S3 matches If-Match with or without the quotes around the ETag, so this store does too.
    return etag.strip('"')


def _is_key(text: str) -> bool:
    try:
        validate_key(text)
    except InvalidKey:
        return False
    return True


def _fsync_dir(folder: Path) -> None:
    # A rename or unlink is durable only once its folder is synced, which S3 promises on return.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _collision(key: str) -> InvalidKey:
    return InvalidKey(
        f"object key {key!r} collides with a folder of other keys (or a key is a folder of it):"
        " the local store cannot hold both 'a' and 'a/b', although S3 can"
    )


class LocalStore(ObjectStore):
    """Objects as files below a root folder; conditional writes are atomic across processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Use the folder `root`, creating it if needed; a relative root is resolved now."""
        path = Path(root)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreConfigError(f"local store root {str(path)!r} is not a folder") from None
        self._root = path.resolve()
        self._tmp = self._root / TMP_DIR
        self._locks = self._root / LOCKS_DIR
        self._tmp.mkdir(exist_ok=True)
        self._locks.mkdir(exist_ok=True)

    @property
    def checked_before_registry_writes(self) -> bool:
        """False: its conditions are this module's locks, proven by the contract suite
        (`mlops store check` still probes a folder on request: NFS may not honour flock)."""
        return False

    @property
    def uri(self) -> str:
        """``file://`` and the absolute root, percent-encoded where a URI needs it."""
        return self._root.as_uri()

    def get(self, key: str, *, version_id: str | None = None) -> StoredObject:
        """Read an object; see ObjectStore.get.

        A folder keeps one version of each object, as an unversioned bucket does: the
        "null" version is the object; any other version id names nothing that exists.
        """
        path = self._path(key)
        if version_id not in (None, NULL_VERSION):
            raise ObjectVersionNotFound(key, version_id)  # as S3 says even of a missing key
        try:
            body = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        return StoredObject(key=key, body=body, etag=_etag(_MD5(body).hexdigest()))

    def get_range(self, key: str, start: int, end: int, *, version_id: str | None = None) -> bytes:
        """Read only the range asked for (a seek); see ObjectStore.get_range."""
        path = self._path(key)
        if version_id not in (None, NULL_VERSION):
            raise ObjectVersionNotFound(key, version_id)
        if start >= end:
            return b""
        try:
            with path.open("rb") as file:
                file.seek(start)
                return file.read(end - start)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def head(self, key: str) -> ObjectInfo | None:
        """Describe an object without returning it (its ETag still costs a read); None if absent."""
        return self._info(key, self._path(key))

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Write an object atomically and return its ETag; see ObjectStore.put for the conditions.

        The content type is not kept: nothing reads it back from a local store.
        """
        if if_none_match and if_match is not None:
            raise ValueError("put takes if_none_match or if_match, not both")
        path = self._path(key)
        staged = self._stage(body)
        try:
            # Every write takes the key's lock, not only if_match ones: otherwise a plain put or
            # a delete could slip between an if_match's check and its replace, and be lost.
            with self._locked(path):
                if if_match is not None:
                    current = self._info(key, path)
                    if current is None:
                        raise ObjectNotFound(key)
                    if _bare_etag(current.etag) != _bare_etag(if_match):
                        raise PreconditionFailed(
                            key, f"if_match {if_match} but the object's ETag is {current.etag}"
                        )
                self._install(key, staged, path, create_only=if_none_match)
        finally:
            # os.replace consumed the staged file; os.link and failures leave it behind.
            staged.unlink(missing_ok=True)
        return _etag(_MD5(body).hexdigest())

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in ascending key order.

        Files reached through symlinks, and files whose names are not valid keys, are not listed.
        Each ETag is an MD5 of the file: remembered beside it where the file system allows,
        else computed, so listing then reads every listed file. A file rewritten in place
        by another tool that keeps its size and mtime lists with its old ETag (get, head
        and conditional writes always hash the file).
        """
        validate_prefix(prefix)  # here, not in the generator, so a bad prefix fails at the call
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        folder = prefix.rpartition("/")[0]
        start = self._root.joinpath(*folder.split("/")) if folder else self._root
        if folder.split("/")[0] in _RESERVED or start.resolve() != start:
            return  # the store's own folders, or a symlink on the way: get() refuses those too

        def could_match(base: str, name: str) -> bool:
            below = f"{base}{name}/"
            return below.startswith(prefix) or prefix.startswith(below)

        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            here = Path(dirpath).relative_to(self._root).as_posix()
            base = "" if here == "." else here + "/"
            # Pruning dirnames in place stops the walk descending; it never follows symlinks.
            dirnames[:] = [
                name
                for name in dirnames
                if could_match(base, name) and (base or name not in _RESERVED)
            ]
            keys.extend(
                base + name
                for name in filenames
                if (base + name).startswith(prefix) and _is_key(base + name)
            )
        # Python orders str by code point, which is UTF-8 byte order: the order S3 lists in.
        for key in sorted(keys):
            info = self._info(key, self._root / key, remembered=True)
            if info is not None:  # None: deleted since the walk, or not a regular file
                yield info

    def delete(self, key: str) -> None:
        """Remove an object, and any folders that leaves empty; absent objects are no error."""
        path = self._path(key)
        with self._locked(path):
            if not path.is_file():
                return
            path.unlink()
            _fsync_dir(path.parent)
        self._prune(path.parent)

    def _path(self, key: str) -> Path:
        """The file for `key`, after checking that it and its real location stay in the store."""
        validate_key(key)
        segments = key.split("/")
        if segments[0] in _RESERVED:
            raise InvalidKey(f"object key {key!r} is inside {segments[0]!r}, kept by the store")
        if any(len(segment.encode("utf-8")) > _MAX_SEGMENT_BYTES for segment in segments):
            raise InvalidKey(
                f"object key {key[:80]!r} has a segment longer than the {_MAX_SEGMENT_BYTES}"
                " bytes a local file name can have"
            )
        resolved = self._root.joinpath(*segments).resolve()
        inside = resolved.relative_to(self._root) if resolved.is_relative_to(self._root) else None
        if inside is None or not inside.parts or inside.parts[0] in _RESERVED:
            raise InvalidKey(f"object key {key!r} leads out of the store through a symlink")
        return resolved

    def _info(self, key: str, path: Path, *, remembered: bool = False) -> ObjectInfo | None:
        """Size, ETag and mtime of the regular file at `path`, all from one open; None if none.

        Only a listing (`remembered`) trusts the MD5 kept beside the file: a tool that
        rewrites a file in place keeping its size and mtime (`cp -p`) would leave it stale,
        and a conditional write or a head must see the bytes as they are.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return None
            digest = _remembered_md5(fd, status) if remembered else None
            if digest is None:
                with open(fd, "rb", closefd=False) as file:
                    digest = hashlib.file_digest(file, _MD5).hexdigest()
                _remember_md5(fd, status, digest)
            etag = _etag(digest)
        finally:
            os.close(fd)
        modified = datetime.fromtimestamp(status.st_mtime, tz=UTC)
        return ObjectInfo(key=key, size=status.st_size, etag=etag, last_modified=modified)

    def _stage(self, body: bytes) -> Path:
        """Write `body` to a fresh synced file in the temp area, ready to be renamed into place."""
        staged = self._tmp / f"{secrets.token_hex(16)}.part"
        # os.open with 0o666 lets the umask decide permissions, as for any other new file.
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(body)
                file.flush()
                _remember_md5(file.fileno(), os.fstat(file.fileno()), _MD5(body).hexdigest())
                os.fsync(file.fileno())
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return staged

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """Hold the lock of the file at `path` against other threads and processes.

        flock belongs to an open file description, so each holder opening its own descriptor
        excludes threads of one process as well; POSIX record locks (lockf) would not.
        """
        # Hashed so that any key, however long or deep, has a short flat lock file name.
        name = hashlib.sha256(path.relative_to(self._root).as_posix().encode("utf-8")).hexdigest()
        fd = os.open(self._locks / name, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _install(self, key: str, staged: Path, path: Path, *, create_only: bool) -> None:
        """Move the staged file to `path`: os.link if it must not exist yet, else os.replace."""
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise _collision(key) from None
            except FileNotFoundError:
                continue  # a delete pruned a folder on the way while mkdir was creating it
            try:
                if create_only:
                    # link, unlike replace, fails if the target exists, in one atomic step.
                    os.link(staged, path)
                else:
                    os.replace(staged, path)
            except FileNotFoundError:
                continue  # a delete pruned the just-made, still empty parent folder
            except FileExistsError:
                if path.is_dir():
                    raise _collision(key) from None
                raise PreconditionFailed(key, "if_none_match but an object exists") from None
            except IsADirectoryError:
                raise _collision(key) from None
            _fsync_dir(path.parent)
            return

    def _prune(self, folder: Path) -> None:
        """Remove `folder` and its parents while empty, so a key can later reuse their names."""
        while folder != self._root:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone): the folders above are in use too
            folder = folder.parent
