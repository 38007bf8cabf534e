"""The toy paper's paper-wide settings (`toy.*`): types and ranges, checked before any run
(`core/validate.py`). Each experiment's own settings are declared beside its function (`@experiment`)."""

from __future__ import annotations

from llm_efficiency_bench.core.validate import Num

SPEC = {
    "toy.noise": Num(float, 0, 1e6),  # standard deviation of the noise of every sample (Eq. 1); 0 = exact
}

RULES: list = []
