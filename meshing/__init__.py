"""polycrack meshing: particle geometry + Voronoi grains + binder shell -> tagged tetrahedral mesh."""
