"""SQLAlchemy tables, engines and the queries on them. Imports nothing else of searchjobs but errors."""
