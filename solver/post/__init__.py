"""Post-processing: damage metrics on the mesh, plots of run directories, mid-plane renders."""
