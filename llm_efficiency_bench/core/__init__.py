"""Shared foundation: model and data loading, timing, records, references, tables and plots."""
