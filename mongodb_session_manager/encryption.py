"""Encryption at rest: MongoDB explicit client-side field level encryption of what a session says.

``encryption=ContentEncryption(...)`` on the manager or the factory encrypts each message's
content (and its redacted form) and each agent's ``state`` and ``internal_state`` with
``AEAD_AES_256_CBC_HMAC_SHA_512-Random`` before they leave the process; ids, roles,
timestamps, the conversation manager's counters and every metric stay in clear, so listing,
paging and metrics queries keep working. Needs the ``[encryption]`` extra (``pymongocrypt``).

Keys: one data key per user (key alt name ``msm:user:<user_id>``), per session when the
session has no user (``msm:session:<session_id>``), created on first use in the key vault
(``key_vault_namespace``). ``repository.erase_user`` deletes the user's keys: every copy of
that user's documents, in backups and archives too, can no longer be decrypted; a resume then
raises ``SessionDecryptionError``.

For development, :meth:`ContentEncryption.local` keeps a generated master key in a file: not
for production, where the master key lives in a KMS (``kms_providers`` and ``master_key`` are
passed to pymongo as they are: ``aws``, ``azure``, ``gcp``, ``kmip``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = ["DEFAULT_KEY_VAULT_NAMESPACE", "LOCAL_MASTER_KEY_BYTES", "ContentEncryption"]

DEFAULT_KEY_VAULT_NAMESPACE = "encryption.__keyVault"
LOCAL_MASTER_KEY_BYTES = 96


@dataclass(frozen=True, eq=False)
class ContentEncryption:
    """Where the keys are: the KMS providers, the key vault, and the master key new data keys use.

    ``kms_provider`` names the provider new data keys are created with (default: the only one
    given). Create it once per process and share it: it keeps the key vault connection and
    libmongocrypt's key cache (a key is held in memory up to a minute after it was read).
    """

    kms_providers: Mapping[str, Any]
    key_vault_namespace: str = DEFAULT_KEY_VAULT_NAMESPACE
    kms_provider: str | None = None
    master_key: Mapping[str, Any] | None = None
    key_vault_client: Any = None
    kms_tls_options: Mapping[str, Any] | None = None
    _runtime: dict[int, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kms_providers, Mapping) or not self.kms_providers:
            raise ConfigurationError(
                "kms_providers must name at least one KMS provider, e.g. {'local': {...}}"
            )
        database, _, collection = str(self.key_vault_namespace).partition(".")
        if not database or not collection:
            raise ConfigurationError(
                f"key_vault_namespace must be 'database.collection', got {self.key_vault_namespace!r}"
            )
        if self.kms_provider is None and len(self.kms_providers) != 1:
            raise ConfigurationError("several kms_providers: pass kms_provider=... to say which creates keys")
        if self.kms_provider is not None and self.kms_provider not in self.kms_providers:
            raise ConfigurationError(f"kms_provider {self.kms_provider!r} is not in kms_providers")

    @property
    def provider(self) -> str:
        return self.kms_provider or next(iter(self.kms_providers))

    def __repr__(self) -> str:  # never show key material
        return (
            f"ContentEncryption(providers={sorted(self.kms_providers)}, "
            f"key_vault_namespace={self.key_vault_namespace!r})"
        )

    @classmethod
    def local(
        cls, key_file: str | os.PathLike[str], *, key_vault_namespace: str = DEFAULT_KEY_VAULT_NAMESPACE
    ) -> ContentEncryption:
        """The local KMS provider with a master key kept in ``key_file`` (created if missing).

        For development and tests only: whoever reads the file can decrypt every session.
        """
        path = Path(key_file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(os.urandom(LOCAL_MASTER_KEY_BYTES))
        key = path.read_bytes()
        if len(key) != LOCAL_MASTER_KEY_BYTES:
            raise ConfigurationError(
                f"a local master key is {LOCAL_MASTER_KEY_BYTES} bytes; the key file is not"
            )
        return cls({"local": {"key": key}}, key_vault_namespace=key_vault_namespace)
