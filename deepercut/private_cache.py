"""Private, verified on-disk caches (TensorRT engines, imported models).

A cache entry is only ever loaded when all of these hold:

- the cache's folder (``engines``, ``imported``... under the cache root: ``$DEEPERCUT_CACHE``,
  else ``$XDG_CACHE_HOME/deepercut``, else ``~/.cache/deepercut``) is a real directory (not a
  symlink) owned by the current user with no group/other permissions (created 0700): no other
  user can plant or swap an entry;
- the entry is a regular file owned by the user, and its sidecar ``<name>.mac`` holds the
  HMAC-SHA256 of the entry's name and bytes under a random key kept in the folder
  (``.key``, 0600). The MAC is checked on the bytes read, and those same bytes are what the caller
  deserialises, so nothing can be swapped between the check and the load. It catches
  corruption, torn writes and entries copied in from another cache or machine; it cannot
  stop the user's own account (which can also read the key), which is why callers still
  deserialise entries without any pickle path.

Entries are written to a temporary file in the same folder, then the sidecar and the entry
are renamed into place, so a reader never sees a half-written entry as valid.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

#: Environment variable naming the cache root (every deepercut cache lives below it).
CACHE_ENV = "DEEPERCUT_CACHE"
#: Suffix of an entry's MAC sidecar.
MAC_SUFFIX = ".mac"
_KEY_NAME = ".key"


class UntrustedCache(RuntimeError):
    """A cache folder or entry that must not be used (wrong owner, open permissions, bad MAC)."""


def cache_root() -> Path:
    """``$DEEPERCUT_CACHE``, else ``$XDG_CACHE_HOME/deepercut``, else ``~/.cache/deepercut``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "deepercut"


def folder(name: str) -> Path:
    """The folder of the cache called ``name`` under :func:`cache_root`."""
    return cache_root() / name


def check_private(path: Path, kind: str = "directory") -> os.stat_result:
    """Raise :class:`UntrustedCache` unless ``path`` is a real ``kind`` (``directory`` or
    ``file``) owned by this user with no group/other permissions; returns its ``lstat``."""
    info = os.lstat(path)
    is_kind = stat.S_ISDIR if kind == "directory" else stat.S_ISREG
    if not is_kind(info.st_mode):
        raise UntrustedCache(f"{path} is not a plain {kind} (a symlink or other file type)")
    if info.st_uid != os.getuid():
        raise UntrustedCache(f"{path} is owned by uid {info.st_uid}, not by this user")
    if info.st_mode & 0o077:
        raise UntrustedCache(
            f"{path} has mode {stat.S_IMODE(info.st_mode):04o}: group/others may write or read "
            f"it (chmod 700 it, or point ${CACHE_ENV} at a private folder)"
        )
    return info


class PrivateCache:
    """One cache folder of MAC-verified entries.

    Args:
        directory: the folder (e.g. :func:`folder` ``("engines")``).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, entry: str) -> Path:
        """Where ``entry`` is (or will be) stored."""
        return self.directory / entry

    def prepare(self) -> Path:
        """Create the folder (0700) when missing and check that it is private. Its parents
        need not be: whoever could swap the folder cannot make it theirs to this user.

        Raises:
            UntrustedCache: it exists but is not private to this user.
            OSError: it cannot be created.
        """
        self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
        check_private(self.directory)
        return self.directory

    def read(self, entry: str) -> bytes | None:
        """The verified bytes of ``entry``; ``None`` when it does not exist.

        Raises:
            UntrustedCache: the folder is not private, or the entry is not a private file,
                has no sidecar, or its MAC does not match (do not use it; it can be rebuilt).
        """
        self.prepare()
        path = self.path(entry)
        try:
            data = _read_private(path)
        except FileNotFoundError:
            return None
        try:
            mac = _read_private(path.with_name(path.name + MAC_SUFFIX)).decode("ascii").strip()
        except FileNotFoundError:
            raise UntrustedCache(f"{path} has no {MAC_SUFFIX} sidecar: not written here") from None
        except UnicodeDecodeError:
            raise UntrustedCache(f"{path}: unreadable {MAC_SUFFIX} sidecar") from None
        if not hmac.compare_digest(mac, self._mac(entry, data)):
            raise UntrustedCache(f"{path}: MAC mismatch (corrupt, or not written by this user)")
        return data

    def staging_path(self, entry: str) -> Path:
        """A new private temporary file in the folder to write ``entry`` to before
        :meth:`commit`."""
        self.prepare()
        suffix = ".tmp" + Path(entry).suffix  # keep the type: some writers check the extension
        fd, name = tempfile.mkstemp(prefix=f".{entry}.", suffix=suffix, dir=self.directory)
        os.close(fd)
        return Path(name)

    def commit(self, entry: str, staged: Path) -> Path:
        """Sign a staged file and move it into place as ``entry``; returns its path."""
        os.chmod(staged, 0o600)  # writers that recreate the file get the umask's mode
        data = _read_private(staged)
        final = self.path(entry)
        sidecar = self.staging_path(entry + MAC_SUFFIX)
        sidecar.write_text(self._mac(entry, data) + "\n")
        # Entry first: between the two renames a reader sees a MAC mismatch (a rebuild), never
        # an unsigned entry accepted.
        os.replace(staged, final)
        os.replace(sidecar, final.with_name(final.name + MAC_SUFFIX))
        return final

    def write(self, entry: str, data: bytes) -> Path:
        """Store ``data`` as ``entry`` (atomically, signed); returns its path."""
        staged = self.staging_path(entry)
        staged.write_bytes(data)
        return self.commit(entry, staged)

    def _mac(self, entry: str, data: bytes) -> str:
        return hmac.new(self._key(), entry.encode() + b"\0" + data, hashlib.sha256).hexdigest()

    def _key(self) -> bytes:
        """The per-user MAC key, created once (0600) with a link so racing creators agree."""
        key = self.directory / _KEY_NAME
        try:
            return _read_private(key)
        except FileNotFoundError:
            pass
        fd, tmp = tempfile.mkstemp(prefix=".key.", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            try:
                os.link(tmp, key)
            except FileExistsError:  # another process made it first: use theirs
                pass
        finally:
            os.unlink(tmp)
        return _read_private(key)


def _read_private(path: Path) -> bytes:
    """The bytes of a regular file owned by this user and private to it, checked on the open
    descriptor (no symlink is followed, nothing swapped between check and read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedCache(f"{path} is a symlink") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedCache(f"{path} is not a regular file")
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise UntrustedCache(
                f"{path} is not private to this user (uid {info.st_uid}, mode "
                f"{stat.S_IMODE(info.st_mode):04o})"
            )
        return f.read()
