"""The chaos suite: faults injected into the real processes of `make run` under load.

`python -m tests.chaos` (`make chaos`) runs every scenario but the long soak against its own
PostgreSQL and Redis on free ports and prints, per scenario, how many accepted jobs were lost,
completed twice or run by two workers at once; `--all` (`make chaos-all`) runs the soak too.
See docs/chaos.md.
"""
