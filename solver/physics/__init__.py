"""Physics: pure material laws (:mod:`.materials`) and the UFL forms of each field — electrochemistry, elasticity with lithiation eigenstrains, AT2 fracture — on the mesh domain of a bundle."""
