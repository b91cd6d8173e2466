"""Sealing and opening values with one data key per user (or session): the I/O half of encryption.

Runs on the manager's I/O threads (encrypting may read the key vault). Values are encrypted as
whole BSON values with ``AEAD_AES_256_CBC_HMAC_SHA_512-Random`` and stored as BSON binary
subtype 6; anything else passes through unchanged, so sessions stored before encryption was
turned on still read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bson.binary import Binary
from bson.codec_options import CodecOptions

from .errors import ConfigurationError, SessionDecryptionError

if TYPE_CHECKING:
    from .encryption import ContentEncryption

__all__ = [
    "ENCRYPTED_SUBTYPE",
    "Keyring",
    "is_sealed",
    "key_name",
    "keyring",
    "open_document",
    "session_key_name",
    "user_key_name",
]

ENCRYPTED_SUBTYPE = 6
ALGORITHM = "AEAD_AES_256_CBC_HMAC_SHA_512-Random"


def user_key_name(user_id: str) -> str:
    return f"msm:user:{user_id}"


def session_key_name(session_id: str) -> str:
    return f"msm:session:{session_id}"


def key_name(session_id: str, user_id: str | None) -> str:
    """One data key per user; per session when it has no user."""
    return user_key_name(user_id) if user_id is not None else session_key_name(session_id)


def is_sealed(value: Any) -> bool:
    return isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE


_lock = threading.Lock()


def keyring(encryption: ContentEncryption, client: Any) -> Keyring:
    """The keyring of ``encryption`` on ``client`` (one per pair, kept for the process)."""
    with _lock:
        ring = encryption._runtime.get(id(client))
        if ring is None:
            ring = encryption._runtime[id(client)] = Keyring(encryption, client)
        return ring


class Keyring:
    """A ``ClientEncryption`` and the ids of the data keys it has found or created."""

    def __init__(self, encryption: ContentEncryption, client: Any) -> None:
        try:
            from pymongo.encryption import ClientEncryption
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigurationError(
                "encryption needs pymongocrypt: pip install 'mongodb-session-manager[encryption]'"
            ) from exc
        self._encryption = encryption
        vault_client = encryption.key_vault_client or client
        self._client: Any = ClientEncryption(
            dict(encryption.kms_providers),
            encryption.key_vault_namespace,
            vault_client,
            CodecOptions(),
            kms_tls_options=None if encryption.kms_tls_options is None else dict(encryption.kms_tls_options),
        )
        database, _, collection = encryption.key_vault_namespace.partition(".")
        self._vault = vault_client[database][collection]
        self._ids: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._indexed = False

    def seal(self, value: Any, name: str) -> Any:
        """``value`` encrypted with the data key ``name`` (created on first use)."""
        from pymongo.errors import EncryptionError

        try:
            return self._client.encrypt(value, ALGORITHM, key_id=self._key_id(name))
        except EncryptionError:
            with self._lock:  # the key may have been deleted (an erased user back again): once more
                self._ids.pop(name, None)
            return self._client.encrypt(value, ALGORITHM, key_id=self._key_id(name))

    def open(self, value: Any, where: str) -> Any:
        """The plain value of a sealed one; a value stored in clear is returned as it is."""
        if not is_sealed(value):
            return value
        from pymongo.errors import EncryptionError

        try:
            return self._client.decrypt(value)
        except EncryptionError as exc:
            raise SessionDecryptionError(
                f"{where} | cannot decrypt: its data key was deleted (the user was erased) or is unreachable"
            ) from exc

    def _key_id(self, name: str) -> Any:
        with self._lock:
            known = self._ids.get(name)
        if known is not None:
            return known
        self._ensure_vault_index()
        found = self._client.get_key_by_alt_name(name)
        if found is None:
            from pymongo.errors import DuplicateKeyError, EncryptionError

            try:
                key_id = self._client.create_data_key(
                    self._encryption.provider,
                    master_key=None
                    if self._encryption.master_key is None
                    else dict(self._encryption.master_key),
                    key_alt_names=[name],
                )
            except (DuplicateKeyError, EncryptionError):  # another process created it first
                found = self._client.get_key_by_alt_name(name)
                if found is None:
                    raise
                key_id = found["_id"]
        else:
            key_id = found["_id"]
        with self._lock:
            self._ids[name] = key_id
        return key_id

    def _ensure_vault_index(self) -> None:
        if self._indexed:
            return
        # MongoDB's documented key vault index: one key per alt name.
        self._vault.create_index(
            "keyAltNames", unique=True, partialFilterExpression={"keyAltNames": {"$exists": True}}
        )
        self._indexed = True


def open_document(
    ring: Keyring, document: Mapping[str, Any], fields: tuple[str, ...], where: str
) -> dict[str, Any]:
    """``document`` with the sealed values of ``fields`` opened."""
    opened = dict(document)
    for name in fields:
        if name in opened:
            opened[name] = ring.open(opened[name], where)
    return opened
