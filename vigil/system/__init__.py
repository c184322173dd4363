"""The machine: early boot, mounts, network, shutdown; loaded in system mode only."""
