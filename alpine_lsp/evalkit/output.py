"""Strict JSON for the reports of `eval` and `bench`."""

from __future__ import annotations

import json
import math

import numpy as np


def clean(obj):
    """NaN/inf to None and numpy scalars to Python, so the output is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj) -> str:
    return json.dumps(clean(obj), indent=2, allow_nan=False)
