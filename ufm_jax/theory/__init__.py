"""Analytic global minimisers of UFMs, where the papers give them (corrected per docs/errata.md)."""
