"""Proof that the suite can fail: the broken builds of ``mutations/`` through the Docker suite
and through the simulator.
"""
