"""The search job: its stored states and events (store), its cached view (cache), one attempt on a worker
(lifecycle), and the stages a worker runs (search)."""
