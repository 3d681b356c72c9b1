"""Problems: the coupled (x, V, u, φ), quasi-static fracture and 1D reference problems built from the physics forms and the numerics."""
