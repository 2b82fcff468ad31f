"""Tests of the prediction sources and the inference-logger ingest."""
