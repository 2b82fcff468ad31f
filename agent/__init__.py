"""The aims-agent service: scheduling, decisions, incidents, evidence, API and CLI wiring."""

__version__ = "0.1.0"
