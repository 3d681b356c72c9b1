"""Mechanics verification (docs/model.md §6 cases 4-6) and unit checks of the UFL constitutive blocks.

Units: µm, GPa. Every test states its tolerance next to the closed form it checks.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from dolfinx.fem.petsc import NonlinearProblem
from mpi4py import MPI
from petsc4py import PETSc
from polycrack.params import DATA_DIR
from polycrack.physics import materials as mat
from polycrack.physics import mechanics as M
from polycrack.post.metrics import average_tensor
from polycrack.verification.mech_meshes import box_grains, random_axes, sphere_in_shell

TABLE = mat.LatticeStrains(DATA_DIR / "nmc811_lattice_maerker2019.tsv")
LU = {"snes_type": "ksponly", "ksp_type": "preonly", "pc_type": "lu"}
LU["pc_factor_mat_solver_type"] = "mumps"
E_P, NU_P = 150.0, 0.3


def _one_cell_mesh():
    return dmesh.create_unit_cube(MPI.COMM_SELF, 1, 1, 1, dmesh.CellType.tetrahedron)


def _eval_const(expr, msh):
    """Evaluate a UFL expression of Constants at one point of cell 0."""
    one = 1.0 + 0.0 * ufl.SpatialCoordinate(msh)[0]  # attaches the mesh to a Constant-only expr
    e = fem.Expression(expr * one, np.array([[0.25, 0.25, 0.25]]), comm=MPI.COMM_SELF)
    return e.eval(msh, np.array([0], dtype=np.int32)).reshape(expr.ufl_shape)


def _solve_u(dom, model, x_value, outer, degree=1, law_x=None):
    V = M.make_displacement_space(dom, degree)
    u = fem.Function(V)
    x = M.uniform_x(dom, x_value)
    n = dom.axis_field()
    F = M.displacement_residual(model, dom, u, ufl.TestFunction(V), x, n)
    bcs = M.displacement_bcs(V, dom, outer)
    p = NonlinearProblem(
        F,
        u,
        bcs=bcs,
        entity_maps=[dom.entity_map],
        petsc_options=LU,
        petsc_options_prefix="tmech_",
    )
    p.solve()
    assert p.solver.getConvergedReason() > 0
    return u, x, n


def _cell_stress(dom, sig) -> np.ndarray:
    """Stress at the midpoint of every local submesh cell, shape (ncells, 3, 3)."""
    sm = dom.submesh
    imap = sm.topology.index_map(3)
    cells = np.arange(imap.size_local, dtype=np.int32)
    e = fem.Expression(sig, np.array([[0.25, 0.25, 0.25]]), entity_maps=[dom.entity_map])
    return e.eval(sm, cells).reshape(-1, 3, 3)


# ---------------------------------------------------------------------------------------------
# UFL building blocks
# ---------------------------------------------------------------------------------------------


@pytest.mark.mpi
def test_strain_law_reproduces_table():
    """eps_a, eps_c (the default lookup form) equal the table's linear interpolation to 1e-12
    (incl. outside)."""
    law = M.StrainLawUFL(TABLE)
    assert law.max_deviation() < 1e-12
    msh = _one_cell_mesh()
    xc = fem.Constant(msh, 0.5)
    ea, ec = law.eps_a(xc), law.eps_c(xc)
    for xv in (0.05, 0.12, 0.3117, 0.36, 0.55, 0.9084, 1.2):
        xc.value = xv
        assert abs(_eval_const(ea, msh) - TABLE.eps_a(xv)) < 1e-12
        assert abs(_eval_const(ec, msh) - TABLE.eps_c(xv)) < 1e-12
    # derivative d eps_c/dx (for the coupled Jacobian) equals the table slope to 1e-9
    xc.value = 0.5
    xv = ufl.variable(xc)
    d = _eval_const(ufl.diff(law.eps_c(xv), xv), msh)
    fd = (TABLE.eps_c(0.5 + 1e-7) - TABLE.eps_c(0.5 - 1e-7)) / 2e-7
    assert abs(d - fd) < 1e-6 * max(1.0, abs(fd))


@pytest.mark.mpi
@pytest.mark.parametrize("mapping", ["direct", "normalised"])
def test_strain_law_lookup_form_equals_table_and_hinges(mapping):
    """The default UFL form of the strain law (a binary search of conditionals, issue 26) at
    4000 points of a P1 field (every table knot, the points between, outside the data): values
    equal the table's interpolation to 1e-14 and the hinge-sum form to 1e-14; d/dx equals
    the hinge form's derivative, i.e. the segment slope, to 1e-12 relative, away from knots."""
    lat = mat.LatticeStrains(TABLE.table, mapping=mapping, model_x_end=0.18)
    look, hinge = M.StrainLawUFL(lat), M.StrainLawUFL(lat, ufl_form="hinges")
    assert look.ufl_form == "lookup"
    msh = dmesh.create_interval(MPI.COMM_WORLD, 3999, [0.0, 1.0])
    V = fem.functionspace(msh, ("Lagrange", 1))
    x = fem.Function(V)
    # the nodes' x values: a shuffled mix of the knots (mapped back to model x), midpoints,
    # random points and points outside [x_0, x_n]
    a, b = look._affine
    knots_model = (look.knots - a) / b
    mids = 0.5 * (knots_model[1:] + knots_model[:-1])
    rng = np.random.default_rng(3)
    vals = np.concatenate([knots_model, mids, rng.uniform(-0.1, 1.2, 4000)])[:4000]
    order = rng.permutation(4000)
    # each node (local or ghost) takes the value of its position along the interval
    pos = np.rint(V.tabulate_dof_coordinates()[:, 0] * 3999).astype(int)
    x.x.array[:] = vals[order][pos]
    pts = V.element.interpolation_points
    cells = np.arange(msh.topology.index_map(1).size_local, dtype=np.int32)
    for w in ("a", "c"):
        f_look = getattr(look, f"eps_{w}")(x)
        f_hinge = getattr(hinge, f"eps_{w}")(x)
        xs = fem.Expression(x, pts).eval(msh, cells).ravel()
        v_look = fem.Expression(f_look, pts).eval(msh, cells).ravel()
        v_hinge = fem.Expression(f_hinge, pts).eval(msh, cells).ravel()
        table = getattr(lat, f"eps_{w}")(xs)
        assert np.abs(v_look - table).max(initial=0.0) < 1e-14
        assert np.abs(v_look - v_hinge).max(initial=0.0) < 1e-14
        # derivatives, away from the knots (where the two forms pick either side)
        xv = ufl.variable(x)
        d_look = (
            fem.Expression(ufl.diff(getattr(look, f"eps_{w}")(xv), xv), pts)
            .eval(msh, cells)
            .ravel()
        )
        d_hinge = (
            fem.Expression(ufl.diff(getattr(hinge, f"eps_{w}")(xv), xv), pts)
            .eval(msh, cells)
            .ravel()
        )
        xd = a + b * xs
        far = np.abs(xd[:, None] - look.knots[None, :]).min(axis=1) > 1e-9
        scale = np.abs(d_hinge).max(initial=1.0)
        assert np.abs(d_look - d_hinge)[far].max(initial=0.0) < 1e-12 * scale
        # numbers (the reference x0) take the same arithmetic as the UFL leaves
        for xn in (float(knots_model[5]), float(mids[40]), -0.05, 1.1, 0.9084):
            assert abs(getattr(look, f"eps_{w}")(xn) - float(getattr(lat, f"eps_{w}")(xn))) < 1e-15


def test_strain_law_pchip_and_normalised_mapping():
    """PCHIP sampled on 321 knots deviates <= 3e-5 (the table's own precision, 1e-4 A / 2.87 A)
    from the PCHIP curve; the normalised mapping
    is reproduced exactly (1e-12)."""
    pchip = mat.LatticeStrains(TABLE.table, interpolation="pchip")
    dev = M.StrainLawUFL(pchip).max_deviation()
    assert dev < 3e-5, dev
    norm = mat.LatticeStrains(TABLE.table, mapping="normalised", model_x_end=0.18)
    assert M.StrainLawUFL(norm).max_deviation() < 1e-12


def test_principal_values_random_and_degenerate():
    """Closed-form eigenvalues vs numpy.linalg.eigvalsh: <= 1e-9 of |A| for distinct eigenvalues,
    <= 2e-5 of |A| for (nearly) repeated ones (the acos clip, eta = 1e-10, costs sqrt(2 eta));
    spectral stress d psi+/de vs lambda <tr>+ I + 2 mu e+ from numpy: <= 1e-6 relative."""
    msh = _one_cell_mesh()
    A = fem.Constant(msh, np.zeros((3, 3)))
    ls = ufl.as_vector(M.principal_values(A))
    lm, mu = mat.lame_GPa(E_P, NU_P)
    ev = ufl.variable(A)
    pp, _ = M.strain_energy_split(ev, lm, mu, "spectral")
    dpp = ufl.diff(pp, ev)
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    cases = [rng.normal(size=(3, 3)) * 1e-2 for _ in range(6)]
    cases = [0.5 * (c + c.T) for c in cases]
    cases += [Q @ np.diag(d) @ Q.T * 1e-2 for d in ([1, -0.3, -0.3], [2, 2, -1], [1, 1, 1])]
    cases += [np.diag([1e-2, -3e-3, -3e-3]), np.zeros((3, 3))]
    for i, c in enumerate(cases):
        A.value = c
        got = _eval_const(ls, msh)
        ref = np.sort(np.linalg.eigvalsh(c))[::-1]
        tol = 1e-9 if i < 6 else 2e-5
        assert np.abs(got - ref).max() <= tol * max(np.abs(c).max(), 1e-3), (c, got, ref)
        if np.abs(c).max() == 0:
            continue
        w, P = np.linalg.eigh(c)
        ep = P @ np.diag(np.maximum(w, 0)) @ P.T
        sref = lm * max(np.trace(c), 0.0) * np.eye(3) + 2 * mu * ep
        s = _eval_const(dpp, msh)
        assert np.abs(s - sref).max() <= 1e-6 * np.abs(sref).max(), (c, s, sref)


def test_splits_sum_to_psi0():
    """psi+ + psi- = psi0 for every split on a random strain: 1e-12 relative for none/hybrid,
    1e-7 for voldev/spectral (their <.>+- are smoothed over a strain width 1e-6: O(mu delta^2))."""
    msh = _one_cell_mesh()
    rng = np.random.default_rng(2)
    c = rng.normal(size=(3, 3)) * 1e-2
    e = fem.Constant(msh, 0.5 * (c + c.T))
    lm, mu = mat.lame_GPa(E_P, NU_P)
    psi0 = 0.5 * lm * np.trace(e.value) ** 2 + mu * np.sum(e.value**2)
    for split in M.SPLITS:
        pp, pm = M.strain_energy_split(e, lm, mu, split)
        tot = _eval_const(pp + pm, msh)
        tol = 1e-12 if split in ("none", "hybrid") else 1e-7
        assert abs(tot - psi0) <= tol * psi0, split


# ---------------------------------------------------------------------------------------------
# docs/model.md §6 case 4: Lamé sphere bonded to the binder shell
# ---------------------------------------------------------------------------------------------


@pytest.mark.mpi
@pytest.mark.verification
@pytest.mark.parametrize("outer", ["clamped", "traction_free"])
def test_lame_sphere_in_binder_shell(outer, verification):
    """Uniform hydrostatic sphere stress sigma = 3 K1 (A - eps*) within 1 % (P2 on curved cells)."""
    a, b, es = 1.0, 10.0 / 7.0, 0.01
    msh, ct, ft = sphere_in_shell(a, b, 0.4, 0.25, order=2)
    dom = M.ParticleDomain.build(msh, ct, ft, np.array([[0.0, 0.0, 1.0]]))
    Ep, Eb = M.ElasticModuli(E_P, NU_P), M.ElasticModuli(0.3, 0.3)
    law = M.LinearStrainLaw(a1=es, c1=es)  # isotropic eigenstrain eps* = es x I
    model = M.MechanicsModel(Ep, Eb, law, x0=0.0, split="none")
    u, x, n = _solve_u(dom, model, 1.0, outer, degree=2)
    X = ufl.SpatialCoordinate(msh)
    inner = ufl.conditional(ufl.lt(ufl.sqrt(ufl.inner(X, X)), 0.7 * a), 1.0, 0.0)
    S = average_tensor(
        model.particle_stress(u, x, n), dom.dx_parent(4)(1), msh.comm, [dom.entity_map], inner
    )
    K1, K2, mu2 = Ep.bulk, Eb.bulk, Eb.shear
    rho = (a / b) ** 3
    beta = 4 * mu2 * rho / (3 * K2) if outer == "traction_free" else -rho
    c = 3 * K1 * es / (3 * K1 + 4 * mu2 + beta * (3 * K1 - 3 * K2))
    A = beta * c + c
    s_exact = 3 * K1 * (A - es)
    err = np.abs(S - s_exact * np.eye(3)).max() / abs(s_exact)
    verification(f"Lame sphere in binder shell ({outer}): sphere stress", err, 0.01)


# ---------------------------------------------------------------------------------------------
# docs/model.md §6 case 5: Eshelby sphere with anisotropic eigenstrain
# ---------------------------------------------------------------------------------------------


@pytest.mark.mpi
@pytest.mark.verification
def test_eshelby_anisotropic_inclusion(verification):
    """Interior stress of a unit sphere in a clamped sphere of radius 8 (same moduli) within 3 %
    of Eshelby's infinite-matrix value (finite-size error ~1 % at b = 8); principal stresses of
    two c-axis orientations agree within 0.5 %."""
    msh, ct, ft = sphere_in_shell(1.0, 8.0, 0.3, 2.0, grow=0.3, order=2)
    nu = NU_P
    Ep = M.ElasticModuli(E_P, nu)
    K, mu = Ep.bulk, Ep.shear
    law = M.LinearStrainLaw(a1=-0.01, c1=0.02)  # eps_a = -0.01, delta eps = 0.03 at x = 1
    alpha = (1 + nu) / (3 * (1 - nu))
    beta = 2 * (4 - 5 * nu) / (15 * (1 - nu))
    X = ufl.SpatialCoordinate(msh)
    inner = ufl.conditional(ufl.lt(ufl.sqrt(ufl.inner(X, X)), 0.6), 1.0, 0.0)
    principal = []
    for ax in random_axes(2, seed=3):
        dom = M.ParticleDomain.build(msh, ct, ft, ax[None, :])
        model = M.MechanicsModel(Ep, Ep, law, x0=0.0, split="none")
        u, x, n = _solve_u(dom, model, 1.0, "clamped", degree=2)
        S = average_tensor(
            model.particle_stress(u, x, n), dom.dx_parent(4)(1), msh.comm, [dom.entity_map], inner
        )
        es = -0.01 * np.eye(3) + 0.03 * np.outer(ax, ax)
        m = np.trace(es) / 3
        Sx = -3 * K * (1 - alpha) * m * np.eye(3) - 2 * mu * (1 - beta) * (es - m * np.eye(3))
        err = np.linalg.norm(S - Sx) / np.linalg.norm(Sx)
        verification("Eshelby anisotropic inclusion: interior stress", err, 0.03)
        principal.append(np.linalg.eigvalsh(S))
    diff = np.abs(principal[0] - principal[1]).max() / np.abs(principal[0]).max()
    verification("Eshelby: principal stresses under rotation of n", diff, 0.005)


# ---------------------------------------------------------------------------------------------
# docs/model.md §6 case 6: patch tests
# ---------------------------------------------------------------------------------------------


def _patch(splits, law, xs, x0=0.9084, seed=4):
    msh, ct, ft = box_grains(n=4, splits=splits)
    dom = M.ParticleDomain.build(msh, ct, ft, random_axes(splits**3, seed))
    Ep = M.ElasticModuli(E_P, NU_P)
    model = M.MechanicsModel(Ep, Ep, law, x0=x0, split="none")
    out = []
    for xv in xs:
        u, x, n = _solve_u(dom, model, xv, "traction_free")
        out.append(_cell_stress(dom, model.particle_stress(u, x, n)))
    return out


@pytest.mark.mpi
@pytest.mark.verification
def test_patch_single_grain_free_is_stress_free(verification):
    """One free grain, table eigenstrain at x = 0.4 (|eps*| ~ 2e-2): |sigma| <= 1e-8 E |eps*|."""
    law = M.StrainLawUFL(TABLE)
    (s,) = _patch(1, law, [0.4])
    scale = E_P * max(abs(TABLE.eps_c(0.4) - TABLE.eps_c(0.9084)), 1e-3)
    err = MPI.COMM_WORLD.allreduce(np.abs(s).max(initial=0.0), op=MPI.MAX) / scale
    verification("patch: one free grain, uniform x -> sigma = 0", err, 1e-8)


@pytest.mark.mpi
@pytest.mark.verification
def test_patch_polycrystal_isotropic_strain_is_stress_free(verification):
    """8 grains, eps_c = eps_a (delta eps = 0), uniform x: |sigma| <= 1e-8 E |eps*|."""
    law = M.LinearStrainLaw(a1=0.02, c1=0.02)
    (s,) = _patch(2, law, [0.4])
    err = MPI.COMM_WORLD.allreduce(np.abs(s).max(initial=0.0), op=MPI.MAX) / (E_P * 0.02 * 0.5)
    verification("patch: polycrystal, delta eps = 0 -> sigma = 0", err, 1e-8)


@pytest.mark.mpi
@pytest.mark.verification
def test_patch_polycrystal_scales_with_delta_eps(verification):
    """8 grains, table law, uniform x1 = 0.5, x2 = 0.33: sigma(x)/[deps(x) - deps(x0)] equal
    pointwise to 1e-8 relative (the isotropic part leaves a free body stress-free)."""
    law = M.StrainLawUFL(TABLE)
    x0 = 0.9084
    s1, s2 = _patch(2, law, [0.5, 0.33], x0=x0)

    def dd(x):
        return TABLE.delta_eps(x) - TABLE.delta_eps(x0)

    r1, r2 = s1 / dd(0.5), s2 / dd(0.33)
    scale = MPI.COMM_WORLD.allreduce(np.abs(r1).max() if r1.size else 0.0, op=MPI.MAX)
    assert scale > 1.0  # the anisotropic mismatch does stress the polycrystal
    err = MPI.COMM_WORLD.allreduce(np.abs(r1 - r2).max(initial=0.0), op=MPI.MAX) / scale
    verification("patch: polycrystal sigma/delta eps independent of x", err, 1e-8)


@pytest.mark.mpi
def test_displacement_residual_x_jacobian_block():
    """dF_u/dx (the u-x block of the coupled Jacobian, via UFL through the lookup strain law
    and mixed-mesh entity maps) times a perturbation dx equals the finite difference of F_u to
    1e-6 relative (x kept away from table knots)."""
    from dolfinx.fem.petsc import assemble_matrix, assemble_vector

    msh, ct, ft = box_grains(n=3, splits=2, binder=False)
    dom = M.ParticleDomain.build(msh, ct, ft, random_axes(8, 7))
    model = M.MechanicsModel(
        M.ElasticModuli(E_P, NU_P), M.ElasticModuli(0.3, 0.3), M.StrainLawUFL(TABLE), 0.9084
    )
    X = fem.functionspace(dom.submesh, ("Lagrange", 1))
    x = fem.Function(X)
    x.interpolate(lambda p: 0.494 + 0.004 * p[0])  # between the knots at 0.4924 and 0.5037
    b = M.build_blocks(dom, model, x, None, outer_boundary="traction_free")
    b.u.interpolate(lambda p: 1e-3 * np.vstack([p[1], p[2] ** 2, p[0] * p[1]]))
    emaps = [dom.entity_map]
    J = fem.form(ufl.derivative(b.F_u, x, ufl.TrialFunction(X)), entity_maps=emaps)
    F = fem.form(b.F_u, entity_maps=emaps)
    A = assemble_matrix(J)
    A.assemble()
    dx = fem.Function(X)
    dx.interpolate(lambda p: 1e-4 * (1.0 + p[1]))
    Jdx = A.createVecLeft()
    A.mult(dx.x.petsc_vec, Jdx)
    f0 = assemble_vector(F)
    f0.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    x.x.array[:] += dx.x.array
    f1 = assemble_vector(F)
    f1.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    fd = f1 - f0
    err = (fd - Jdx).norm() / fd.norm()
    assert fd.norm() > 0
    assert err <= 1e-6, err
