"""Benchmarks of mongodb-session-manager: ``python -m benchmarks.run [--size tiny|default]``."""
