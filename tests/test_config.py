"""server.config: Settings read from the environment."""
from __future__ import annotations

from server.config import Settings


def test_pii_masking_is_a_per_schema_setting():
    assert Settings.from_env({}).mask_pii_schemas == ("medical_records",)
    assert Settings.from_env({"GOLDLOOP_MASK_PII_SCHEMAS": "contracts, medical_records"}).mask_pii_schemas == ("contracts", "medical_records")
    assert Settings.from_env({"GOLDLOOP_MASK_PII_SCHEMAS": ""}).mask_pii_schemas == ()
