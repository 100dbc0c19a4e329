"""Prometheus metrics of SPEC §7. No personal identifier ever goes into a label."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_PROPAGATION_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

checks_total = Counter(
    "sanctiongate_checks_total", "Checks decided", ["channel", "decision", "matter_category"]
)
check_duration_seconds = Histogram(
    "sanctiongate_check_duration_seconds",
    "Time to decide a check",
    ["channel"],
    buckets=_LATENCY_BUCKETS,
)
list_changes_total = Counter(
    "sanctiongate_list_changes_total", "List changes by outcome", ["op", "result"]
)
change_propagation_seconds = Histogram(
    "sanctiongate_change_propagation_seconds",
    "From a list change's produce time (or event time) to visible in the index",
    buckets=_PROPAGATION_BUCKETS,
)
index_entries = Gauge(
    "sanctiongate_index_entries", "Entries in the index (not removed)", ["polarity", "list_type"]
)
index_lag_seconds = Gauge("sanctiongate_index_lag_seconds", "How far the index is behind its topic")
rejected_total = Counter(
    "sanctiongate_rejected_total",
    "Messages sent to the dead-letter topic",
    ["source_topic", "code"],
)
alerts_total = Counter("sanctiongate_alerts_total", "Monitoring alerts raised", ["type"])
feedback_total = Counter("sanctiongate_feedback_total", "Execution feedback received", ["outcome"])
feedback_overdue = Gauge(
    "sanctiongate_feedback_overdue", "Block/review decisions still without feedback past the SLA"
)
identifier_anomalies_total = Counter(
    "sanctiongate_identifier_anomalies_total",
    "Well-formed identifiers that fail their check character, kept and flagged",
    ["source", "kind"],
)
consumer_lag_messages = Gauge(
    "sanctiongate_consumer_lag_messages", "Messages not yet consumed", ["topic", "group"]
)
index_rebuilding = Gauge("sanctiongate_index_rebuilding", "1 while the index is being rebuilt")
