"""Workflow: what a user runs — the run drivers, protocol, checkpoints, exports, sweeps, the demo and ``verify``."""
