"""Shared pytest fixtures."""

from __future__ import annotations

import os

from hypothesis import settings

# CI machines are 2 noisy cores: no deadlines, modest example counts.
settings.register_profile("ci", deadline=None, max_examples=60)
settings.register_profile("dev", deadline=None, max_examples=30)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
