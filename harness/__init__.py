"""Chaos-testing harness for the multiconnect high-availability cluster."""
