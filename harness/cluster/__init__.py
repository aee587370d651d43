"""Stage 2, the cluster: images built here, the Docker engine, the container plan, bring-up,
links through toxiproxy, labels and the sweeper, reuse, docker-compose runs.
"""
