"""Shared by the examples: the model to talk to, the database to use, a local server.

Every example runs as-is, offline: the model is a ``ScriptedModel`` (deterministic replies,
real streaming events, real token counts) and the server is ``MONGODB_URI`` or an embedded
SecantusDB started for the run. Set ``MSM_MODEL`` to a model id (for example a Bedrock model
id) to talk to a real model instead, and ``MSM_DATABASE`` to choose the database.
"""

from __future__ import annotations

import os
from typing import Any

from mongodb_session_manager.embedded import local_mongodb
from mongodb_session_manager.testing import ScriptedModel

__all__ = ["DATABASE", "local_mongodb", "model", "using_real_model"]

DATABASE = os.environ.get("MSM_DATABASE", "chat_db")


def model(*replies: Any, **options: Any) -> Any:
    """``MSM_MODEL`` when set (Strands resolves the id), else a ScriptedModel replaying ``replies``."""
    model_id = os.environ.get("MSM_MODEL")
    if model_id:
        return model_id
    return ScriptedModel(replies, **options)


def using_real_model() -> bool:
    return bool(os.environ.get("MSM_MODEL"))
