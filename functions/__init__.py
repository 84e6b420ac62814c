"""Thin edges: each module turns one kind of trigger into a call of the common library."""
