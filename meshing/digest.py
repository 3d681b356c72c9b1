"""Content hash of a mesh bundle: the same hash means the same mesh on any machine.

Hashed: every node (tag, coordinates rounded to ``QUANTUM_UM``), every element of dimension 2 and
3 (entity, type, tag, nodes), the physical groups (dimension, tag, name, entities) and
``grains.csv`` (numbers rounded to ``QUANTUM_UM``). Not hashed: ``mesh.json`` (timings, versions).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

QUANTUM_UM = 1e-12  # coordinates and grains.csv numbers are compared on this grid (µm)


def _q(x) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=float) / QUANTUM_UM).astype(np.int64)


def bundle_digest(bundle: Path) -> dict:
    """SHA-256 of the bundle's mesh, tags and grains.csv (``bundle`` = bundle directory).

    Returns {"nodes", "cells", "tags", "grains", "bundle"} (hex digests; "bundle" covers the
    other four) and the counts {"n_nodes", "n_tets"}. Opens its own gmsh session: call it when no
    other gmsh session is open in this process.
    """
    import gmsh

    bundle = Path(bundle)
    h = {k: hashlib.sha256() for k in ("nodes", "cells", "tags", "grains")}
    gmsh.initialize(readConfigFiles=False, interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.open(str(bundle / "mesh.msh"))
        tags, xyz, _ = gmsh.model.mesh.getNodes()
        order = np.argsort(tags)
        h["nodes"].update(np.asarray(tags, np.int64)[order].tobytes())
        h["nodes"].update(_q(xyz).reshape(-1, 3)[order].tobytes())
        n_tets = 0
        for dim in (2, 3):
            for _, ent in sorted(gmsh.model.getEntities(dim)):
                types, etags, conns = gmsh.model.mesh.getElements(dim, ent)
                for t, e, c in zip(types, etags, conns, strict=True):
                    h["cells"].update(np.array([dim, ent, t], np.int64).tobytes())
                    h["cells"].update(np.asarray(e, np.int64).tobytes())
                    h["cells"].update(np.asarray(c, np.int64).tobytes())
                    if dim == 3 and t == 4:
                        n_tets += len(e)
        for dim, tag in sorted(gmsh.model.getPhysicalGroups()):
            ents = sorted(int(x) for x in gmsh.model.getEntitiesForPhysicalGroup(dim, tag))
            name = gmsh.model.getPhysicalName(dim, tag)
            h["tags"].update(f"{dim} {tag} {name}: {ents}\n".encode())
    finally:
        gmsh.finalize()
    with open(bundle / "grains.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    h["grains"].update(",".join(rows[0]).encode())
    for row in rows[1:]:
        h["grains"].update(_q([float(v) for v in row]).tobytes())
    out = {k: v.hexdigest() for k, v in h.items()}
    out["bundle"] = hashlib.sha256("".join(out[k] for k in sorted(out)).encode()).hexdigest()
    out["n_nodes"] = int(len(tags))
    out["n_tets"] = n_tets
    return out
