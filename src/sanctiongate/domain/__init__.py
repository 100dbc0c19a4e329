"""The pure core: message models, identifier rules and the decision rules. No I/O here."""
