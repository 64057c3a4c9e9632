"""Conformance scenarios for taskqueue.v1, one module per area."""
