"""Worker and scheduler processes: they sit on top, with web."""
