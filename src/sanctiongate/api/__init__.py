"""The pre-approval check API (SPEC §5)."""
