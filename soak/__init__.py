"""The crash soak: the Procfile processes and the simulator under load and under fire.

`python -m soak` (or `--quick`) starts a scratch database, a Redis of its own, the simulator, two
`payments worker` dynos, the scheduler and the web as OS processes; drives deposits and withdrawals
through the HTTP API and the simulator's control API from several client tasks while it kills
worker processes, restarts the scheduler and the web, stops Redis, terminates database connections
and makes the gateway fail; then waits for the pipeline to drain and checks that every cent landed
exactly once. It imports only the installed package (for the ledger checks), never test code.
"""
