"""Stage 5, the judgement: pure checkers over the history, bounds from the cluster's own
settings, the verdict that runs them.
"""
