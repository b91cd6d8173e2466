"""Helpers for web frameworks; each lives in its own module behind its package's extra.

- :mod:`.fastapi` (``pip install 'mongodb-session-manager[fastapi]'``): a lifespan that owns
  the process-wide factory, a per-request session manager dependency, streaming responses.
"""

__all__: list[str] = []  # the helpers live in submodules, each behind its extra
