"""Observers: pollers that put what the cluster says about itself into the history.

One observer per file, each a :class:`~harness.run.observers.poller.Poller` (a daemon thread on
a fixed period with a hard stop) that records only completions: ``health`` (the API's view of
the roles), ``shard_map`` (the table, read directly), ``claims`` (what each node says it holds),
``db_record`` (the database's own record of changes), ``gateway`` (the gateway stand-in's log),
``soak`` (each node's memory and file descriptors). A new history source is one new file here
plus its test; :class:`harness.run.workload.Workload` starts the ones a scenario asks for.
"""
