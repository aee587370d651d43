"""Sans-IO decision cores: ``state, inputs, now -> actions``. No sockets, no clocks, no SQL."""
