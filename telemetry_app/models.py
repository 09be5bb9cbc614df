"""Telemetry buffer models arrive with the telemetry issue; the app is installed now so that the
project layout and migrations history are stable from the start."""
