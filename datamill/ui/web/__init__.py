"""``datamill ui``: a local web page over cache directories, read-only.

Everything here reads what a run has already made durable — the state database through
read-only SQLite connections, the step files up to their last commit — so the page never
blocks a run, never takes its lock and never writes to a cache. ``app.create_app`` builds the
Starlette application (an optional dependency: ``pip install 'datamill[ui]'``); the other modules
are plain functions over a ``CacheDir`` and a read-only ``StateDB``.
"""
