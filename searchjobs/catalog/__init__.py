"""The product catalog: its rows (store), the image descriptor (descriptor), the search backends (backends),
the demo generator (demo) and imports (load)."""
