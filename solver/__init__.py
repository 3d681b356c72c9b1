"""polycrack: chemo-mechanical phase-field fracture of polycrystalline cathode particles.

Layers, top to bottom (imports only point down):

- :mod:`polycrack.cli` and :mod:`polycrack.workflow`: the command line, the run driver, protocol,
  checkpoints, exports, sweeps, the demo and ``verify``;
- :mod:`polycrack.problems`: the coupled, quasi-static and electrochemistry-only problems, and the
  1D reference model;
- :mod:`polycrack.numerics` (Newton, PETSc life cycle, time stepping) and :mod:`polycrack.physics`
  (materials, electrochemistry, elasticity, fracture, the mesh domain); :mod:`polycrack.post`
  (metrics, plots, renders);
- :mod:`polycrack.config` (case files), :mod:`polycrack.units`, :mod:`polycrack.errors`,
  :mod:`polycrack.params` (parameter sets and tables) and :mod:`polycrack.meshing` (geometry to
  mesh bundle; it imports nothing of the solver).
"""

__version__ = "0.1.0"
