"""Shared pytest fixtures."""

from __future__ import annotations

import os
import tempfile

from hypothesis import settings

# Recorders started by tests write run files; keep them out of the user's runtime directory
# so a `shotwatch console` on the same machine never attaches to a test's recorder.
os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="shotwatch-tests-")

# CI machines are 2 noisy cores: no deadlines, modest example counts.
settings.register_profile("ci", deadline=None, max_examples=60)
settings.register_profile("dev", deadline=None, max_examples=30)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
