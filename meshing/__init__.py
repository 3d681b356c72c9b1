"""polycrack meshing: particle geometry + Voronoi grains + binder shell -> tagged tetrahedral mesh.

``build_bundle(geometry, out_dir)`` writes a mesh bundle (docs/user-guide.md section 4); the solver
reads it with ``solver.domain.load_bundle``.
"""

from .build import build_bundle

__all__ = ["build_bundle"]
