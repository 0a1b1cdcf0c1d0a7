"""The import tables of the dashboard suites' worker (``--imports dashboard_tables:IMPORTS``): the test
guest imports nothing, so one empty table named "plain" is all it needs."""

IMPORTS: dict[str, dict[int, object]] = {"plain": {}}
