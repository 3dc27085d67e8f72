"""The base of every configuration model (config.py, analysis_sections.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["_Model"]


class _Model(BaseModel):
    # strict: a TOML string "4" is not a number; no NaN/inf: a NaN bound would veto nothing.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, strict=True,
                              allow_inf_nan=False)
