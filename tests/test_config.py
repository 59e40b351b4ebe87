"""server.config: Settings read from the environment."""
from __future__ import annotations

from server.config import Settings


def test_pii_masking_is_a_per_schema_setting():
    assert Settings.from_env({}).mask_pii_schemas == ("medical_records",)
    assert Settings.from_env({"GOLDLOOP_MASK_PII_SCHEMAS": "contracts, medical_records"}).mask_pii_schemas == ("contracts", "medical_records")
    assert Settings.from_env({"GOLDLOOP_MASK_PII_SCHEMAS": ""}).mask_pii_schemas == ()


def test_rehearsal_and_warm_start_reach_the_rounds_options_and_bad_values_are_refused():
    import pytest

    assert Settings.from_env({}).train_options().rehearsal == 0.5 and Settings.from_env({}).train_options().warm_start == "serving"
    s = Settings.from_env({"GOLDLOOP_REHEARSAL": "0", "GOLDLOOP_WARM_START": "base"})
    assert s.train_options().rehearsal == 0.0 and s.train_options().warm_start == "base"
    assert s.train_options(rehearsal=2.5).rehearsal == 2.5  # a CLI flag over the environment
    for bad in ("lots", "-1", "101"):
        with pytest.raises(ValueError, match="GOLDLOOP_REHEARSAL"):
            Settings.from_env({"GOLDLOOP_REHEARSAL": bad})
    with pytest.raises(ValueError, match="GOLDLOOP_WARM_START"):
        Settings.from_env({"GOLDLOOP_WARM_START": "starter"})
