"""Telemetry for AgentOS: run and launch events buffered in the database and uploaded in batches,
the collector endpoint that receives them, and the metrics dashboard."""

__version__ = "0.1.0"
