"""A short text summary of a resolved case: the numbers a user checks before a long run."""

from __future__ import annotations

import math

from ..config import ResolvedCase
from ..physics import materials as mat

#: ``physics.mode: quasistatic`` is flagged when the estimated radial Li spread x_avg - x_surf
#: (:func:`li_spread_estimate`) exceeds this: above it the neglected surface depletion moves the
#: voltage by ~10 mV or more (|dU/dx| is 1-3 V per unit x between 3.7 and 4.2 V)
QUASISTATIC_SPREAD_LIMIT = 0.01

#: the phase-field resolution rule: ``check`` and ``run`` warn when the particle's nominal mesh
#: size h (geometry.mesh.particle_size_um / 2^refine_levels) exceeds this multiple of the
#: phase-field length min(l, l_gamma). Measured by benchmarks/convergence/study.py on the demo
#: particle (docs/convergence.md): halving h from h = l to h = l/2 moved the damage onset by
#: 9 mV but the crack area Γ at 4.0 V by 17 %, so h = l is not resolved; h = l/2 is the coarsest
#: level whose Γ follows the first-order error model below (the halving h/l = 1/2 -> 1/4 at
#: l = 1.6 µm moved Γ at 4.5 V by 9.9 %, the model's 10 %)
H_OVER_L_MAX = 0.5
#: Γ(h) ≈ Γ_0 (1 + c h/l): the crack area's discretisation error, first order in h/l with this c
#: (a crack band one cell wide adds h/(2l) of its area: benchmarks/convergence/
#: gamma_discretisation.py; measured c = 0.50 at l = 1.6 µm and 4.2-4.5 V, 0.50 at l = 0.8 µm and
#: 4.0 V, 0.29 at l = 0.8 µm and 4.5 V from two levels each, docs/convergence.md). ``check``
#: prints c h/l as the expected excess of Γ over its h -> 0 limit.
GAMMA_ERROR_C = 0.5


def li_spread_estimate(rc: ResolvedCase) -> tuple[float, float] | None:
    """(x_avg - x_surf, C-rate) at the case's largest cc C-rate, for a sphere of the nominal
    diameter at quasi-steady state (:func:`polycrack.physics.materials.quasi_steady_li_spread`);
    None without a cc step."""
    rates = [s.c_rate for s in rc.case.protocol if s.type == "cc"]
    if not rates:
        return None
    c_rate = max(rates)
    r_m = rc.case.geometry.particle.diameter_um * 0.5e-6
    return mat.quasi_steady_li_spread(c_rate, r_m, rc.params.electrochemistry.D_m2_s), c_rate


def li_spread_line(rc: ResolvedCase) -> str | None:
    """One line of ``polycrack check``: the estimated radial Li spread (None without cc step)."""
    est = li_spread_estimate(rc)
    if est is None:
        return None
    mode = rc.case.physics.mode
    return (
        f"  radial Li spread at C/{1 / est[1]:g}: x_avg - x_surf ~ {est[0]:.2g} (sphere at "
        f"quasi-steady state, c_rate R^2 / (15 D 3600 s)); physics.mode {mode}"
        + (f" (limit {QUASISTATIC_SPREAD_LIMIT:g})" if mode == "quasistatic" else "")
    )


def quasistatic_warning(rc: ResolvedCase) -> str | None:
    """A warning when ``physics.mode: quasistatic`` neglects a radial Li spread above
    :data:`QUASISTATIC_SPREAD_LIMIT`; None otherwise (and for coupled runs)."""
    est = li_spread_estimate(rc)
    if rc.case.physics.mode != "quasistatic" or est is None or est[0] <= QUASISTATIC_SPREAD_LIMIT:
        return None
    spread, c_rate = est
    return (
        f"physics.mode: quasistatic assumes uniform Li, but at C/{1 / c_rate:g} the radial "
        f"spread x_avg - x_surf is about {spread:.3g} (> {QUASISTATIC_SPREAD_LIMIT:g}; sphere of "
        f"{rc.case.geometry.particle.diameter_um:g} µm, D = {rc.params.electrochemistry.D_m2_s:g}"
        " m²/s): voltage and stresses will differ from the coupled model; use mode: coupled or "
        "a slower charge"
    )


def resolution(rc: ResolvedCase) -> dict | None:
    """The particle mesh size against the phase-field length (None without fracture):
    ``h_nominal_um`` = particle_size_um / 2^refine_levels, ``l_um`` = min(l, l_gamma) in µm, their
    ratio and the rule :data:`H_OVER_L_MAX`."""
    if not (rc.case.physics.mechanics and rc.case.physics.fracture):
        return None
    m = rc.case.geometry.mesh
    h = m.particle_size_um / 2**m.refine_levels
    fr = rc.params.fracture
    l_um = 1e6 * min(fr.l_m, fr.l_gamma_m)
    return {
        "h_nominal_um": h,
        "l_um": l_um,
        "h_over_l": h / l_um,
        "h_over_l_max": H_OVER_L_MAX,
        "crack_area_excess_estimate": GAMMA_ERROR_C * h / l_um,
    }


def resolution_line(rc: ResolvedCase) -> str | None:
    """One line of ``polycrack check``: h, l and h/l against the rule (None without fracture)."""
    res = resolution(rc)
    if res is None:
        return None
    line = (
        f"  phase-field resolution: h = {res['h_nominal_um']:g} µm (particle_size_um / "
        f"2^refine_levels), l = {res['l_um']:g} µm, h/l = {res['h_over_l']:.3g} "
        f"(rule: h/l <= {H_OVER_L_MAX:g}, docs/convergence.md)"
    )
    adapt = rc.case.geometry.mesh.adapt
    if adapt is not None:
        line += f"; adaptive: marked cells refined to h/min(l, l_gamma) = {adapt.h_over_l:g}"
    else:
        line += (
            f"; the crack area Γ is expected about "
            f"{100 * res['crack_area_excess_estimate']:.0f} % above its h -> 0 limit "
            f"(first order, measured: {GAMMA_ERROR_C:g} h/l)"
        )
    return line


def resolution_warning(rc: ResolvedCase) -> str | None:
    """A warning when h/l exceeds :data:`H_OVER_L_MAX` (None otherwise); with adaptive
    refinement, when its target h/l does."""
    res = resolution(rc)
    adapt = rc.case.geometry.mesh.adapt
    if res is None or res["h_over_l"] <= H_OVER_L_MAX * (1 + 1e-9):
        return None
    if adapt is not None:
        if adapt.h_over_l <= H_OVER_L_MAX * (1 + 1e-9):
            return None  # the base mesh is refined where the phase field is
        return (
            f"geometry.mesh.adapt.h_over_l = {adapt.h_over_l:g} refines damaged cells only to "
            f"h/l = {adapt.h_over_l:g} > {H_OVER_L_MAX:g}, where the measured damage still "
            "moves with h (docs/convergence.md)"
        )
    need = res["l_um"] * H_OVER_L_MAX
    return (
        f"the particle mesh (h = {res['h_nominal_um']:g} µm) does not resolve the phase-field "
        f"length l = {res['l_um']:g} µm: h/l = {res['h_over_l']:.3g} > {H_OVER_L_MAX:g}, where "
        "the measured damage still moves with h (docs/convergence.md); use "
        f"geometry.mesh.particle_size_um <= {need:.3g} or geometry.mesh.refine_levels, or a "
        "larger fracture.l_m with Gc scaled by l"
    )


def case_warnings(rc: ResolvedCase) -> list[str]:
    """Every warning ``check`` and ``run`` print for a case."""
    return [w for w in (quasistatic_warning(rc), resolution_warning(rc)) if w]


def c_rate_label(c_rate: float) -> str:
    """``C/50`` for 0.02, ``1C`` for 1, ``2C`` for 2 (the way cyclers write rates)."""
    return f"{c_rate:g}C" if c_rate >= 1 else f"C/{1 / c_rate:g}"


def material_summary(rc: ResolvedCase) -> str:
    """OCP landmarks, 1C current of the nominal particle and AT2 strengths (bulk, GB nominal)."""
    p = rc.params
    ec, me, fr = p.electrochemistry, p.mechanics, p.fracture
    r_m = rc.case.geometry.particle.diameter_um * 0.5e-6
    vol = 4.0 / 3.0 * math.pi * r_m**3
    lines = [
        f"parameter set {p.name}: x0 = {ec.x0}, U(x0) = {float(mat.ocp_V(ec.x0, model=ec.ocp)):.4f} V",
    ]
    for step in rc.case.protocol:
        if step.type == "cc":
            x_end = mat.x_at_voltage(step.until_voltage_V, ec.ocp)
            i_app = mat.c_rate_current_A(step.c_rate, ec.c_max_mol_m3, vol)
            lines.append(
                f"  cc {c_rate_label(step.c_rate)} {step.direction} to {step.until_voltage_V} V: "
                f"I = {i_app:.4e} A "
                f"(sphere of {2e6 * r_m:g} µm), equilibrium x at cut-off {x_end:.4f}, "
                f"{mat.capacity_mAh_g(ec.x0, x_end, ec.molar_mass_g_mol):.1f} mA h/g"
            )
    s_bulk = mat.at2_strength_Pa(me.E_particle_Pa, fr.Gc_bulk_J_m2, fr.l_m)
    s_gb = mat.at2_strength_Pa(me.E_particle_Pa, fr.Gc_GB_J_m2, fr.l_m)
    lines.append(
        f"  AT2 strength: bulk {s_bulk / 1e9:.2f} GPa, GB (nominal Gc_GB) {s_gb / 1e9:.2f} GPa, "
        f"l = {fr.l_m * 1e6:g} µm, split {fr.split}"
    )
    from ..physics.fracture import summary_line  # local: pulls in dolfinx

    lines.append(summary_line(p))
    if rc.case.physics.mechanics:
        from .strain_path import for_case, landmark_lines

        try:
            lines += landmark_lines(for_case(rc))
        except ValueError as exc:  # e.g. a protocol that never charges above U(x0)
            lines.append(f"  strain path: not computed ({exc})")
    return "\n".join(lines)
