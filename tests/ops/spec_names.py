"""The metric names SPEC §7 requires, as declared (``# TYPE``) and as sampled."""

from __future__ import annotations

HISTOGRAMS = ("sanctiongate_check_duration_seconds", "sanctiongate_change_propagation_seconds")

SPEC_NAMES = (
    "sanctiongate_checks_total",
    "sanctiongate_check_duration_seconds",
    "sanctiongate_list_changes_total",
    "sanctiongate_change_propagation_seconds",
    "sanctiongate_index_entries",
    "sanctiongate_index_lag_seconds",
    "sanctiongate_rejected_total",
    "sanctiongate_alerts_total",
    "sanctiongate_feedback_total",
    "sanctiongate_feedback_overdue",
    "sanctiongate_identifier_anomalies_total",
)

# What a query names: a histogram by its buckets.
SPEC_SAMPLES = frozenset(f"{n}_bucket" if n in HISTOGRAMS else n for n in SPEC_NAMES)
