"""The pytest plugin (entry point ``pytest11: multiconnect_chaos``): options, markers,
fixtures, the summary.
"""
