"""Engines run a plan. `base` is the contract every engine runs (`Engine.run`, a template) and
the one method an engine writes (`Engine.fill`); `local` is the embedded default; others
(Geneva) are plugins built on the same contract."""
from __future__ import annotations

from .base import Engine, EngineOptions, FeatureError, FeatureFill, FeatureRun, FeatureTask, Reporter, RunResult

__all__ = ["Engine", "EngineOptions", "FeatureError", "FeatureFill", "FeatureRun", "FeatureTask", "Reporter",
           "RunResult"]
