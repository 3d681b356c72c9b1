"""Numerics: the block Newton solver and PETSc life cycle, BDF weights, adaptive time stepping, process memory settings. Knows no physics."""
