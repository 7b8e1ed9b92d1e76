"""Batch scoring: every user's top-k as date-partitioned Parquet, and top-k for a few users."""
