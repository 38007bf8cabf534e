"""Every name docs/public_api.md promises is importable where the page says."""

from __future__ import annotations

import importlib
import re

from tests.conftest import REPO

NAMES = re.findall(r"`(llm_efficiency_bench(?:\.\w+)+):(\w+)`", (REPO / "docs" / "public_api.md").read_text())


def test_the_page_names_the_public_parts():
    modules = {m for m, _ in NAMES}
    assert {"llm_efficiency_bench.streaming_llm.sink_cache", "llm_efficiency_bench.streaming_llm.engine",
            "llm_efficiency_bench.fourier_vlm.compress", "llm_efficiency_bench.core.records"} <= modules


def test_every_public_name_imports():
    missing = [f"{m}:{n}" for m, n in NAMES if not hasattr(importlib.import_module(m), n)]
    assert not missing, missing
