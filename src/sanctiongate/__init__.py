"""sanctiongate: streaming joint-sanction interception middleware (联合奖惩自动拦截)."""

__version__ = "0.1.0"
