"""The secret key behind every pseudonym, kept outside the store.

Each pseudonym is a keyed hash (HMAC-SHA-256) of the original value it replaces, with
a purpose label, so under one key the same original always gets the same pseudonym:
across the instances of a job, across jobs into the same store and across resumed
runs. That is what keeps series and studies together, and what lets a retrieve find
the planned instances it already stored: it computes their pseudonymous UIDs. Without
the key, nobody holding originals (the PACS does) can compute the pseudonyms, nor go
back from a pseudonym to an original.

The key is 32 random bytes, as 64 hexadecimal digits in a file only its owner may
read: one the user names, or one created in qrclient's user configuration folder
under the store's random ID (``marker``). Never in the store: whoever gets the store
must not get the key with it.
"""

from __future__ import annotations

import base64
import errno
import hmac
import os
import stat
import uuid
from pathlib import Path

from qrclient.deid.errors import DeidError

KEY_BYTES = 32
KEY_FOLDER = "pseudonym-keys"  # in qrclient's user configuration folder
_HEX_LENGTH = 2 * KEY_BYTES
_MAX_KEY_FILE = 1024  # bytes read at most: a key file is one line


class PseudonymKey:
    """Maps original values to pseudonyms; the same key always maps them the same way."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError(f"a pseudonym key is {KEY_BYTES} bytes")
        self._secret = secret

    @classmethod
    def generate(cls) -> PseudonymKey:
        return cls(os.urandom(KEY_BYTES))

    def _digest(self, purpose: bytes, value: str) -> bytes:
        message = purpose + b"\0" + value.encode("utf-8", "surrogateescape")
        return hmac.digest(self._secret, message, "sha256")

    @property
    def fingerprint(self) -> str:
        """Names the key in the store without revealing it (a hash of a constant)."""
        return self._digest(b"fingerprint", "").hex()[:16]

    def uid(self, original: str) -> str:
        """A UUID-derived UID (PS3.5 B.2) for an original UID: at most 44 characters."""
        digest = self._digest(b"uid", original.strip(" \x00"))
        return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"

    def patient(self, original: str) -> str:
        """The patient's pseudonym, used as Patient ID and Patient's Name (16 characters)."""
        return "P" + _base32(self._digest(b"patient", original))[:15]

    def accession(self, original: str) -> str:
        """An Accession Number's pseudonym (16 characters: SH's limit)."""
        return "A" + _base32(self._digest(b"accession", original.strip(" ")))[:15]

    def date_shift(self, patient: str, most: int) -> int:
        """Days (1 to ``most``) a patient's dates move back: the same for every instance."""
        digest = self._digest(b"date shift", patient)
        return 1 + int.from_bytes(digest[:8]) % most

    def seed(self) -> str:
        """The seed of the de-identification library's own replacements (other names,
        IDs, addresses), so they too are the same across runs, and secret."""
        return self._digest(b"library seed", "").hex()

    def text(self) -> str:
        return self._secret.hex() + "\n"


def _base32(digest: bytes) -> str:
    return base64.b32encode(digest).decode("ascii").rstrip("=")


def default_key_path(config_folder: Path, store_id: str) -> Path:
    """Where a store's key is kept when the user names none."""
    return config_folder / KEY_FOLDER / f"{store_id}.key"


def load_key(path: Path, what: str) -> PseudonymKey:
    """Read the key file ``path`` (``what`` names it in errors); DeidError if it is not
    a key, or others may read it."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise DeidError(
            f"{what} {path}: cannot read it ({_reason(exc)})",
            "give the key this store was pseudonymised with (--pseudonym-key FILE)",
        ) from None
    with open(descriptor, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise DeidError(f"{what} {path}: not a file", "expected a qrclient key file")
        if status.st_mode & 0o077:
            raise DeidError(
                f"{what} {path}: others may read it (mode {stat.S_IMODE(status.st_mode):o})",
                f"make it yours alone: chmod 600 {path}",
            )
        content = file.read(_MAX_KEY_FILE)
    text = content.decode("ascii", "replace").strip()
    try:
        secret = bytes.fromhex(text) if len(text) == _HEX_LENGTH else b""
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise DeidError(
            f"{what} {path}: not a qrclient key",
            f"expected {_HEX_LENGTH} hexadecimal digits (qrclient creates the file if it "
            "does not exist)",
        )
    return PseudonymKey(secret)


def create_key(path: Path, what: str) -> PseudonymKey:
    """A new key written to ``path`` (which must not exist), readable by its owner only."""
    key = PseudonymKey.generate()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(path, flags, 0o600)
        with open(descriptor, "w", encoding="ascii") as file:
            file.write(key.text())
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise DeidError(
            f"{what} {path}: cannot create it ({_reason(exc)})",
            "name a key file in a folder you can write (--pseudonym-key FILE)",
        ) from None
    return key


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link"
    return exc.strerror or str(exc)
