"""Batch scoring: a table in the bucket scored by a registered version, part by part."""
