"""Tag numbers shared by the mesh bundle and the solver (docs/user-guide.md section 4).

Cells: grain g has tag g (1..N); the binder has BINDER. Facets: grain boundaries GB, the
particle-binder interface INTERFACE, the outer binder surface OUTER. Tags never overlap.
"""

BINDER: int = 100000  # cell tag of the binder shell (grain counts are validated <= 99999)
GB: int = 1  # facets between two different grains
INTERFACE: int = 2  # facets between a grain and the binder (Li exchange, Butler-Volmer)
OUTER: int = 3  # outer binder surface (clamped by default)
