"""``python -m mongodb_session_manager``: the same command as ``mongodb-session-manager``."""

import sys

from .cli import main

sys.exit(main())
