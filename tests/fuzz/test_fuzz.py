"""The CI share of the fuzzers (about a minute on 2 cores); `python -m tests.fuzz --cases N` runs more.

In process, hypothesis draws case seeds for every target and each case may raise only the target's
documented error types. Then one short run through the subprocess runner, which also measures each
case's peak memory (<= 1 GB over the warmed-up worker) and catches hangs and crashes.
"""
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.__main__ import TARGET_NAMES
from tests.fuzz.runner import fuzz
from tests.fuzz.targets import targets

EXAMPLES = {"checkpoint_zip": 200, "checkpoint_legacy": 200, "pickle_ops": 200, "safetensors": 300,
            "images": 300, "postprocess": 100, "crop": 200}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on corrupt EXIF and tags
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_only_documented_errors(name):
    t = targets()[name]
    with tempfile.TemporaryDirectory() as tmp:
        @settings(max_examples=EXAMPLES[name], deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.integers(min_value=0, max_value=2 ** 63))
        def one(seed):
            case = t.case(np.random.default_rng([1, seed]))
            try:
                t.run(case, Path(tmp))
            except t.allowed:
                pass

        one()


def test_runner_bounds_memory_and_reports_no_hang():
    for name in ("checkpoint_zip", "images"):
        rep = fuzz(name, 100, seed=2, hang_s=120.0)
        assert rep.cases == 100, rep.summary()
        assert not (rep.unexpected or rep.hangs or rep.over_memory), rep.summary()
