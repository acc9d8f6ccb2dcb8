"""Postgres plumbing: engines and their errors (engine), migrations (schema), the tables the migrations build (tables)."""
