"""searchjobs: durable visual-search jobs on Postgres, RQ and Redis."""

__version__ = "0.1.0"
