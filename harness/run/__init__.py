"""Stage 3, the run: the API client, the workload's clients, the observers that record what the
cluster says about itself, the database's own record, soak sampling.
"""
