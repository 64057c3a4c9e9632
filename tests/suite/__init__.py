"""Tests of the bundled conformance suite: its shared checks, and its verdict against test servers."""
