"""The one place that defines polycrack's internal scaled unit system.

Inputs (case files, parameter sets) are SI with the unit in the key. The finite-element forms use

=========================  ==========  ====================================
quantity                   unit        factor to SI
=========================  ==========  ====================================
length                     µm          1e-6 m
time                       s           1 s
stress, moduli, energy     GPa         1e9 Pa (= GJ/m^3 = nJ/µm^3)
  density (psi, H)
fracture toughness Gc      GPa µm      1e3 J/m^2
diffusivity                µm^2/s      1e-12 m^2/s
Li content                 x = c/c_max dimensionless
current density            A/m^2       1 (kept SI; fluxes are converted below)
potential                  V           1
=========================  ==========  ====================================

so that stiffness matrices are O(100) and the mass/diffusion blocks O(1) for 0.1-1 µm elements.
"""

from __future__ import annotations

LENGTH_M = 1e-6  # 1 internal length unit in metres
TIME_S = 1.0  # 1 internal time unit in seconds
STRESS_PA = 1e9  # 1 internal stress unit in pascals
TOUGHNESS_J_M2 = STRESS_PA * LENGTH_M  # 1 internal Gc unit in J/m^2 (= 1e3)
DIFFUSIVITY_M2_S = LENGTH_M**2 / TIME_S  # 1 internal diffusivity unit in m^2/s


def length(value_m: float) -> float:
    """Metres -> µm."""
    return value_m / LENGTH_M


def stress(value_pa: float) -> float:
    """Pa -> GPa."""
    return value_pa / STRESS_PA


def stress_to_pa(value_gpa: float) -> float:
    """GPa -> Pa (internal stress back to SI at the edges: CSV columns, run.json)."""
    return value_gpa * STRESS_PA


def toughness(value_j_m2: float) -> float:
    """J/m^2 -> GPa µm."""
    return value_j_m2 / TOUGHNESS_J_M2


def diffusivity(value_m2_s: float) -> float:
    """m^2/s -> µm^2/s."""
    return value_m2_s / DIFFUSIVITY_M2_S


def flux_x(i_n_a_m2: float, c_max_mol_m3: float, faraday: float) -> float:
    """Normal current density (A/m^2) -> flux of x through the surface in µm/s.

    ``-D grad(x).n = i_n / (F c_max)``: A/m^2 / (C/mol * mol/m^3) = m/s, times 1e6 for µm/s.
    """
    return i_n_a_m2 / (faraday * c_max_mol_m3) / LENGTH_M * TIME_S
