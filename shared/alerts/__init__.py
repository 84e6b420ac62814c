"""Telling someone: each decision in the audit trail as an event, a webhook call, a metric."""
