"""The control loop's bodies, called by the kopf handlers in :mod:`sc_operator.handlers`.

Each function is synchronous (kopf runs it in a worker thread), idempotent (running it twice, or after a
crash half-way, converges on the same objects) and reads what it needs from the API server: no state is
kept in the process except locks and caches that a restart may lose.
"""
