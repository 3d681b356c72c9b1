"""The strain path of a charge at uniform x: Δε′(V), ε_v(V), V* and an Eshelby σ1 estimate.

Why: with near-uniform x the eigenstrain of a grain with c-axis n is
ε* = [ε_a(x) − ε_a(x0)] I + Δε′ n⊗n, Δε′ = Δε(x) − Δε(x0), Δε = ε_c − ε_a. The isotropic part is
the same in every grain (it loads only the binder), so for a fixed damage field the strain in
the particle is Δε′ times one field for Δε′ > 0 and |Δε′| times another for Δε′ < 0 (the energy
splits are positively homogeneous, not odd), and ψ⁺ ∝ Δε′² on each side, for any split and any
fixed elasticity. The history field H = max ψ⁺ therefore stops growing once Δε′ has passed the
extreme of its sign: for uniform x no new damage appears after V*, the later of the voltages
where Δε′ reaches its maximum and (if it changes sign) its minimum over the charge (issue 22;
docs/strain-data.md). This module computes that from the case's lattice table, x mapping and
OCP, with NumPy/SciPy only (``polycrack strain-path CASE``, seconds, no DOLFINx).
"""

from __future__ import annotations

import json

import numpy as np

from ..physics import materials as mat
from ..physics import strain_data

#: |Δε′| within this of its maximum counts as the maximum (ties between equal table rows)
_TIE = 1e-12
#: a sign of Δε′ whose extreme stays below this is not reported as a branch
_BRANCH_MIN = 1e-6


def eshelby_sigma1_GPa(d_eps_prime, E_GPa: float, nu: float):
    """Maximum principal stress inside one grain from the mismatch Δε′, single-grain Eshelby, GPa.

    Assumptions: a spherical grain, isotropic and homogeneous elasticity (E, ν of the particle)
    in grain and surroundings, the surroundings an infinite matrix carrying the orientation
    average of the eigenstrain (random texture: ⟨n⊗n⟩ = I/3), uniform x, no damage, no free
    surface and no binder. The grain's eigenstrain relative to the matrix is then the
    deviatoric e* = Δε′ (n⊗n − I/3), eigenvalues Δε′ (2/3, −1/3, −1/3). Eshelby's interior
    stress for a sphere is σ = −2μ (1 − β) e*, β = 2(4 − 5ν) / (15 (1 − ν)), so

        σ1 = 2μ (1 − β) Δε′ / 3      for Δε′ > 0 (tension in the basal plane),
        σ1 = 4μ (1 − β) |Δε′| / 3    for Δε′ < 0 (tension along c),

    μ = E / (2 (1 + ν)). For E = 150 GPa, ν = 0.3: 20.1 |Δε′| and 40.3 |Δε′| GPa. A mean-field
    estimate: grain-to-grain neighbours of extreme misorientation load a boundary harder (the FE
    centre-shell mean σ1/Δε′ is 43.4 GPa on the 400-grain particle, issue 22).

    Args:
        d_eps_prime: Δε′ (dimensionless), scalar or array.
        E_GPa: Young's modulus of the grains in GPa.
        nu: Poisson's ratio.
    Returns:
        σ1 in GPa, same shape as ``d_eps_prime``.
    """
    mu = E_GPa / (2.0 * (1.0 + nu))
    beta = 2.0 * (4.0 - 5.0 * nu) / (15.0 * (1.0 - nu))
    d = np.asarray(d_eps_prime, dtype=float)
    return 2.0 * mu * (1.0 - beta) * np.maximum(d / 3.0, -2.0 * d / 3.0)


def _voltage_or_none(x: float, ocp: str) -> float | None:
    if not 0.0 <= x <= 1.0:
        return None
    return float(mat.ocp_V(x, model=ocp))


def _branches(xs, dps, ocp: str, E_GPa: float, nu: float) -> dict:
    """Where Δε′ first reaches its maximum ('positive') and minimum ('negative') on the charge."""
    out = {}
    for sign, name in ((1.0, "positive"), (-1.0, "negative")):
        f = sign * dps
        m = float(f.max())
        if m <= _BRANCH_MIN:
            continue
        k = int(np.argmax(f >= m - _TIE))  # first attainment on charge
        xk = float(xs[k])
        out[name] = {
            "V": float(mat.ocp_V(xk, model=ocp)),
            "x": xk,
            "d_eps_prime": float(dps[k]),
            "sigma1_GPa": float(eshelby_sigma1_GPa(dps[k], E_GPa, nu)),
        }
    return out


def _running_extremes(xs, dps, xg, dpg):
    """Running extreme of |Δε′| of the grid point's sign over the dense path up to it, and ψ⁺
    over its running maximum (1 where damage can still grow)."""
    cum_pos = np.maximum.accumulate(np.maximum(dps, 0.0))
    cum_neg = np.maximum.accumulate(np.maximum(-dps, 0.0))
    last = np.searchsorted(-xs, -xg, side="right") - 1  # dense points at x >= the grid point's
    run_pos = np.maximum(np.where(last >= 0, cum_pos[np.maximum(last, 0)], 0.0), dpg)
    run_neg = np.maximum(np.where(last >= 0, cum_neg[np.maximum(last, 0)], 0.0), -dpg)
    run = np.where(dpg >= 0.0, run_pos, run_neg)
    with np.errstate(divide="ignore", invalid="ignore"):
        psi = np.where(run > 0.0, (dpg / np.where(run > 0.0, run, 1.0)) ** 2, 0.0)
    return run, psi


def _sign_change(xs, dps, ocp: str) -> dict | None:
    """The first x (and V) where Δε′ turns negative after having been positive."""
    pos = np.nonzero(dps > _BRANCH_MIN)[0]
    if not pos.size:
        return None
    neg = np.nonzero(dps[pos[0] :] < 0.0)[0]
    if not neg.size:
        return None
    xf = float(xs[pos[0] + neg[0]])
    return {"x": xf, "V": float(mat.ocp_V(xf, model=ocp))}


def _landmarks(lattice: mat.LatticeStrains, ocp: str, x0: float, v_end: float) -> dict:
    """c-peak and end of collapse: table x, model x, voltage and whether the charge reaches it."""
    out = {}
    for name in ("c_peak", "collapse_end"):
        xd = lattice.landmarks[name]
        xm = float(lattice.model_x(xd))
        v = _voltage_or_none(xm, ocp)
        out[name] = {
            "data_x": xd,
            "model_x": xm,
            "V": v,
            "reached": bool(v is not None and xm <= x0 and v <= v_end + 1e-12),
        }
    return out


def strain_path(
    lattice: mat.LatticeStrains,
    ocp: str,
    x0: float,
    v_end: float,
    E_GPa: float,
    nu: float,
    dv: float = 0.01,
    n_dense: int = 20001,
) -> dict:
    """Δε′, ε_v and σ1 along an equilibrium (uniform-x) charge from x0 to U(x) = v_end.

    Args:
        lattice: the case's lattice strains (table, interpolation, x mapping).
        ocp: OCP model name (polycrack.physics.materials.OCP_MODELS).
        x0: initial Li fraction.
        v_end: end-of-charge voltage in V (above U(x0)).
        E_GPa, nu: grain elasticity for the Eshelby estimate.
        dv: spacing of the printed voltage grid in V.
        n_dense: points of the dense x grid on which V* is located (table knots are added).
    Returns:
        A JSON-ready dict: ``grid`` (lists V_V, x, d_eps_prime, running_extreme (of the sign of
        Δε′), eps_v, sigma1_GPa, psi_over_running_max (1 where damage can still grow)),
        ``branches`` (``positive``/``negative``: V, x, Δε′ and σ1 where Δε′ first reaches its
        maximum / minimum), ``v_star`` (the later branch), ``end`` (values at v_end, with
        ``psi_ratio`` = ψ⁺/ψ⁺max of the same sign), ``sign_change`` and ``landmarks`` (c-peak and
        end of collapse: data x, model x, V or None).
    """
    u0 = float(mat.ocp_V(x0, model=ocp))
    if not v_end > u0:
        raise ValueError(f"end voltage {v_end} V is not above U(x0) = {u0:.4f} V")
    x_end = mat.x_at_voltage(v_end, ocp)

    def d_eps_prime(x):
        return lattice.delta_eps(x) - lattice.delta_eps(x0)

    def eps_v(x):
        return 2.0 * (lattice.eps_a(x) - lattice.eps_a(x0)) + lattice.eps_c(x) - lattice.eps_c(x0)

    # dense x grid plus the table knots (their model x): the extremes of a linear table are at knots
    knots = np.atleast_1d(lattice.model_x(lattice.x_data))
    xs = np.concatenate([np.linspace(x_end, x0, n_dense), knots[(knots > x_end) & (knots < x0)]])
    xs = np.unique(xs)[::-1]  # charge order: x decreasing
    dps = d_eps_prime(xs)
    branches = _branches(xs, dps, ocp, E_GPa, nu)
    # the later branch extreme: after it neither sign of Δε′ reaches a new extreme
    v_star = max(branches.values(), key=lambda b: b["V"]) if branches else None

    n = max(2, int(round((v_end - u0) / dv)) + 1)
    vg = np.linspace(u0, v_end, n)
    xg = np.array([x0] + [mat.x_at_voltage(v, ocp) for v in vg[1:-1]] + [x_end])
    dpg = d_eps_prime(xg)
    run, psi_run = _running_extremes(xs, dps, xg, dpg)
    dp_end = float(d_eps_prime(x_end))
    ext_end = abs(branches.get("positive" if dp_end > 0 else "negative", {}).get("d_eps_prime", 0))
    return {
        "ocp": ocp,
        "x0": x0,
        "U_x0_V": u0,
        "v_end_V": v_end,
        "x_end": x_end,
        "E_GPa": E_GPa,
        "nu": nu,
        "v_star": v_star,
        "branches": branches,
        "end": {
            "V": v_end,
            "x": x_end,
            "d_eps_prime": dp_end,
            "eps_v": float(eps_v(x_end)),
            "psi_ratio": (dp_end / ext_end) ** 2 if ext_end > 0 else 0.0,
            "sigma1_GPa": float(eshelby_sigma1_GPa(dp_end, E_GPa, nu)),
        },
        "sign_change": _sign_change(xs, dps, ocp),
        "landmarks": _landmarks(lattice, ocp, x0, v_end),
        "grid": {
            "V_V": vg.tolist(),
            "x": xg.tolist(),
            "d_eps_prime": dpg.tolist(),
            "running_extreme": run.tolist(),
            "eps_v": eps_v(xg).tolist(),
            "sigma1_GPa": eshelby_sigma1_GPa(dpg, E_GPa, nu).tolist(),
            "psi_over_running_max": psi_run.tolist(),
        },
    }


def end_voltage(rc) -> float:
    """The highest voltage the case's protocol asks for (CC limit or CV hold), V."""
    vs = [
        getattr(s, "until_voltage_V", None) or getattr(s, "voltage_V", None)
        for s in rc.case.protocol
    ]
    vs = [v for v in vs if v is not None]
    return max(vs) if vs else 4.5


def table_label(rc) -> str:
    """Registry key of the case's lattice table (or its file name when not registered)."""
    m = rc.params.mechanics
    if m.lattice_data is not None:
        return m.lattice_data
    return strain_data.key_for_table(rc.lattice_table_path) or rc.lattice_table_path.name


def for_case(rc, v_end: float | None = None, dv: float = 0.01) -> dict:
    """:func:`strain_path` for a resolved case, plus ``table`` and ``mapping`` labels."""
    p = rc.params
    lat = mat.LatticeStrains.from_params(p, rc.lattice_table_path)
    res = strain_path(
        lat,
        p.electrochemistry.ocp,
        p.electrochemistry.x0,
        v_end if v_end is not None else end_voltage(rc),
        p.mechanics.E_particle_Pa * 1e-9,
        p.mechanics.nu_particle,
        dv=dv,
    )
    res["table"] = table_label(rc)
    res["table_file"] = str(rc.lattice_table_path)
    res["interpolation"] = lat.interpolation
    res["mapping"] = lat.mapping
    if lat.affine is not None:
        res["mapping_affine"] = {"a": lat.affine[0], "b": lat.affine[1]}
    return res


def _fmt_v(v) -> str:
    return "-" if v is None else f"{v:.3f} V"


def _branch_text(res: dict) -> str:
    out = []
    for name, word in (("positive", "max"), ("negative", "min")):
        b = res["branches"].get(name)
        if b is not None:
            out.append(f"{word} Δε′ {b['d_eps_prime']:+.4f} at x {b['x']:.3f} ({b['V']:.3f} V)")
    return ", ".join(out) or "Δε′ = 0"


def landmark_lines(res: dict) -> list[str]:
    """Two lines for ``polycrack check``: V*, the end value and the c-peak / collapse landmarks."""
    vs, end, lm = res["v_star"], res["end"], res["landmarks"]
    cp, ce = lm["c_peak"], lm["collapse_end"]
    tail = "" if ce["reached"] else " (not reached)"
    star = "no V*" if vs is None else f"V* = {vs['V']:.3f} V (no new damage after V* at uniform x)"
    return [
        f"  strain path ({res['table']}, {res['mapping']}, OCP {res['ocp']}): "
        f"{_branch_text(res)}; {star}",
        f"    Δε′({end['V']:g} V) = {end['d_eps_prime']:+.4f} (ψ⁺/ψ⁺max {end['psi_ratio']:.2f}); "
        f"c-peak x {cp['model_x']:.3f} at {_fmt_v(cp['V'])}, end of collapse x "
        f"{ce['model_x']:.3f} at {_fmt_v(ce['V'])}{tail}",
    ]


def format_report(res: dict) -> str:
    """The text printed by ``polycrack strain-path``."""
    lines = [
        f"lattice data {res['table']} ({res['interpolation']}, mapping {res['mapping']}), "
        f"OCP {res['ocp']}, x0 = {res['x0']}, U(x0) = {res['U_x0_V']:.4f} V, end "
        f"{res['v_end_V']:g} V at x = {res['x_end']:.4f}",
        "columns: V, x (uniform, on the OCP), Δε′, running extreme of |Δε′| of the same sign, "
        "ε_v = 2Δε_a + Δε_c, ψ⁺ over its running maximum (1: damage can grow), Eshelby σ1",
        f"{'V':>7} {'x':>7} {'Δε′':>9} {'extreme':>9} {'ε_v':>9} {'ψ⁺/H':>7} {'σ1 GPa':>7}",
    ]
    g = res["grid"]
    for row in zip(
        g["V_V"],
        g["x"],
        g["d_eps_prime"],
        g["running_extreme"],
        g["eps_v"],
        g["psi_over_running_max"],
        g["sigma1_GPa"],
        strict=True,
    ):
        v, x, dp, rm, ev, ps, s1 = row
        lines.append(f"{v:7.3f} {x:7.4f} {dp:+9.5f} {rm:9.5f} {ev:+9.5f} {ps:7.3f} {s1:7.3f}")
    lines.append("")
    for name, what in (
        ("positive", "maximum (basal-plane tension)"),
        ("negative", "minimum (tension along c)"),
    ):
        b = res["branches"].get(name)
        if b is not None:
            lines.append(
                f"Δε′ reaches its {what} {b['d_eps_prime']:+.5f} at x = {b['x']:.4f}, "
                f"{b['V']:.3f} V (Eshelby σ1 ≈ {b['sigma1_GPa']:.2f} GPa)"
            )
    sc = res["sign_change"]
    if sc is not None:
        lines.append(f"Δε′ changes sign (+ to −) at x = {sc['x']:.4f}, {sc['V']:.3f} V")
    vs = res["v_star"]
    if vs is not None:
        lines.append(
            f"V* = {vs['V']:.3f} V (x = {vs['x']:.4f}): for uniform x ψ⁺ ∝ Δε′² on each side "
            "of zero, so no new damage after V*"
        )
    lines += landmark_lines(res)[1:]
    lines.append(
        f"σ1: single-grain Eshelby estimate, E = {res['E_GPa']:g} GPa, ν = {res['nu']:g} "
        "(polycrack.workflow.strain_path.eshelby_sigma1_GPa)"
    )
    return "\n".join(lines)


def to_json(res: dict) -> str:
    """JSON text of a :func:`strain_path` result."""
    return json.dumps(res, indent=1, allow_nan=False)


def plot(res: dict, path) -> None:
    """Δε′ and ε_v vs V with V* marked, and the Eshelby σ1 on a second axis (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = res["grid"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(g["V_V"], g["d_eps_prime"], "C0-", label="Δε′ = Δε(x) − Δε(x0)")
    ax.plot(g["V_V"], g["eps_v"], "C2--", label="ε_v (lattice volume)")
    if res["v_star"] is not None:
        v = res["v_star"]["V"]
        ax.axvline(v, color="C3", lw=1, label=f"V* = {v:.3f} V")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set(xlabel="voltage (V), uniform x on the OCP", ylabel="strain")
    ax2 = ax.twinx()
    ax2.plot(g["V_V"], g["sigma1_GPa"], "C1-", lw=0.8)
    ax2.set_ylabel("Eshelby σ1 (GPa)", color="C1")
    ax.set_title(f"{res['table']} ({res['mapping']}), OCP {res['ocp']}", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
