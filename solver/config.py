"""Case files and parameter sets: schema, loading, ``--set`` overrides and clear error messages.

A *case file* (YAML, docs/user-guide.md section 3) names a *parameter set* (``params/<name>.yaml``
or a path) and may override any of its values. Everything is validated here, before any mesh or
solve, and every error names the file, the key path and, for a misspelt key, the nearest valid one.

Parameter-set files store ``key_with_unit: {value: ..., source: ...}``; case files and overrides
give plain values. Units are SI and in the key name; geometry lengths are in µm (``_um``).
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import polycrack.params as _params
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .errors import InputError

# ---------------------------------------------------------------------------------------------
# Parameter set
# ---------------------------------------------------------------------------------------------


class StrictModel(BaseModel):
    # non-finite numbers (.inf, .nan, 1e400) are rejected for every float key
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Positive = Annotated[float, Field(gt=0.0)]
Poisson = Annotated[float, Field(gt=-1.0, lt=0.5)]
PositiveInt = Annotated[int, Field(gt=0)]


class ElectrochemistryParams(StrictModel):
    """Li transport and Butler-Volmer kinetics (docs/model.md section 3)."""

    c_max_mol_m3: Positive
    x0: Fraction
    D_m2_s: Positive
    m_ref_A_m2p5_mol1p5: Positive
    c_e_mol_m3: Positive
    alpha_a: Fraction = 0.5
    alpha_c: Fraction = 0.5
    T_K: Positive = 298.15
    #: ``chen2020`` (default) or ``chen2020_maerker2019``: Chen 2020 below 4.2 V with a
    #: high-voltage branch through 4.5 V at x = 0.120 (physics/materials.py, docs/strain-data.md)
    ocp: Literal["chen2020", "chen2020_maerker2019"] = "chen2020"
    i0_regularisation_x: Annotated[float, Field(gt=0.0, le=0.05)] = 1e-3
    molar_mass_g_mol: Positive = 97.28


class StrainAnchor(StrictModel):
    """One anchor of ``strain_mapping: anchors``: a point of the table lands on a model x.

    ``landmark``: ``start``, ``c_peak``, ``collapse_end`` or a Li fraction of the table; the
    model side is ``voltage_V`` (through the OCP, uniform x) or ``model_x``, exactly one.
    """

    landmark: Literal["start", "c_peak", "collapse_end"] | Fraction | Literal[1.0]
    voltage_V: Positive | None = None
    model_x: Fraction | None = None

    @model_validator(mode="after")
    def _one_model_side(self) -> StrainAnchor:
        if (self.voltage_V is None) == (self.model_x is None):
            raise ValueError("a strain anchor needs exactly one of 'voltage_V' and 'model_x'")
        return self


DEFAULT_LATTICE_TABLE = "data/nmc811_lattice_maerker2019.tsv"


class MechanicsParams(StrictModel):
    """Elasticity of grains and binder, lattice-strain table and its mapping onto x."""

    E_particle_Pa: Positive
    nu_particle: Poisson
    E_binder_Pa: Positive
    nu_binder: Poisson
    lattice_table: str = DEFAULT_LATTICE_TABLE
    #: a key of the strain-data registry (params/data/nmc811_lattice_<key>.yaml, e.g.
    #: kondrakov2017, li2019); unset: ``lattice_table`` (docs/strain-data.md)
    lattice_data: str | None = None
    lattice_interpolation: Literal["linear", "pchip"] = "linear"
    strain_mapping: Literal["direct", "normalised", "anchors"] = "direct"
    strain_map_data_x_start: Fraction | Literal[1.0] = 1.0
    strain_map_data_x_end: Fraction = 0.12
    strain_map_voltage_V: Positive = 4.5
    #: ``strain_mapping: anchors``: one anchor shifts the table in x, two shift and stretch it,
    #: e.g. ``[{landmark: c_peak, voltage_V: 4.0}, {landmark: collapse_end, voltage_V: 4.5}]``
    strain_map_anchors: list[StrainAnchor] = []

    @field_validator("lattice_data")
    @classmethod
    def _known_data(cls, v: str | None) -> str | None:
        if v is not None:
            from .physics import strain_data

            strain_data.get(v)  # ValueError names the available keys
        return v

    @model_validator(mode="after")
    def _mapping_order(self) -> MechanicsParams:
        if self.strain_map_data_x_end >= self.strain_map_data_x_start:
            raise ValueError(
                "strain_map_data_x_end must be smaller than strain_map_data_x_start "
                f"(got {self.strain_map_data_x_end} >= {self.strain_map_data_x_start})"
            )
        if self.strain_mapping == "anchors" and not 1 <= len(self.strain_map_anchors) <= 2:
            raise ValueError(
                "strain_mapping 'anchors' needs one or two strain_map_anchors "
                f"(got {len(self.strain_map_anchors)})"
            )
        if self.lattice_data is not None and self.lattice_table != DEFAULT_LATTICE_TABLE:
            raise ValueError(
                f"give lattice_data ({self.lattice_data!r}) or lattice_table "
                f"({self.lattice_table!r}), not both"
            )
        return self


class FractureParams(StrictModel):
    """AT2 phase field and grain-boundary toughness (docs/model.md section 3)."""

    Gc_bulk_J_m2: Positive
    Gc_GB_J_m2: Positive
    l_m: Positive
    l_gamma_m: Positive
    k_residual: Annotated[float, Field(ge=0.0, lt=1e-2)] = 1e-7
    split: Literal["none", "voldev", "spectral", "hybrid"] = "hybrid"

    @field_validator("l_m", "l_gamma_m")
    @classmethod
    def _length_scale(cls, v: float) -> float:
        if not 1e-9 <= v <= 1e-4:
            raise ValueError(f"length scale {v} m is outside [1e-9, 1e-4] m; is it in metres?")
        return v


class Parameters(StrictModel):
    """A resolved parameter set (plain values, SI)."""

    name: str = "custom"
    description: str = ""
    electrochemistry: ElectrochemistryParams
    mechanics: MechanicsParams
    fracture: FractureParams


PARAM_SECTIONS = ("electrochemistry", "mechanics", "fracture")

# ---------------------------------------------------------------------------------------------
# Case file
# ---------------------------------------------------------------------------------------------


NonNegativeInt = Annotated[int, Field(ge=0)]


class CTSelection(StrictModel):
    """Which particle of an electrode scan to mesh (meshing/ct.py); exactly one key.

    ``label`` as listed by ``polycrack ct-particles``; ``voxel`` [i, j, k] (array indices of the
    scan) or ``point_um`` [a0, a1, a2] (µm along the array's axes 0, 1, 2, origin at the outer
    corner of voxel (0, 0, 0)) inside the particle; ``largest_interior``: the largest particle
    not touching the crop border (also written as the plain string ``largest_interior``).
    """

    label: Annotated[int, Field(ge=1)] | None = None
    voxel: tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt] | None = None
    point_um: tuple[float, float, float] | None = None
    largest_interior: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> CTSelection:
        given = [k for k in ("label", "voxel", "point_um") if getattr(self, k) is not None]
        given += ["largest_interior"] if self.largest_interior else []
        if len(given) != 1:
            raise ValueError(
                "give exactly one of label, voxel, point_um or largest_interior"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


#: keys that only a CT electrode scan (source ct with select) uses
_CT_KEYS = (
    "label_value",
    "allow_border",
    "min_diameter_um",
    "resample_um",
    "rescale_to_diameter_um",
)


class ParticleConfig(StrictModel):
    """Where the particle shape comes from (meshing/).

    ``source: ct`` without ``select``: the volume is one particle (Otsu, largest connected
    component). With ``select``: an electrode scan; its particles are separated by a
    distance-transform watershed (meshing/ct.py) and the selected one is meshed.
    """

    source: Literal["sphere", "synthetic", "ct", "surface"] = "sphere"
    diameter_um: Positive = 14.0
    file: Path | None = None
    #: one value, or three (axis 0, 1, 2 of the array) for anisotropic voxels (needs select)
    voxel_size_um: Positive | tuple[Positive, Positive, Positive] | None = None
    raw_shape: tuple[PositiveInt, PositiveInt, PositiveInt] | None = None
    raw_dtype: str | None = None
    shape_seed: int = 0
    select: CTSelection | None = None
    #: segmented volume: the particle phase's label; unset: Otsu threshold of grey values
    label_value: int | None = None
    #: mesh a selected particle that touches the crop border (its shape is cut by the crop)
    allow_border: bool = False
    #: minimum particle size of the watershed: diameter of the largest ball inside a particle
    min_diameter_um: Positive = 4.0
    #: resample the segmented phase to this isotropic voxel (µm) before separating
    resample_um: Positive | None = None
    #: scale the selected particle to this equivalent diameter (µm); unset: keep its size
    rescale_to_diameter_um: Positive | None = None

    @field_validator("select", mode="before")
    @classmethod
    def _select_string(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v == "largest_interior":
                return {"largest_interior": True}
            raise ValueError(
                f"unknown selection {v!r}: use largest_interior, {{label: N}}, "
                "{voxel: [i, j, k]} or {point_um: [a0, a1, a2]}"
            )
        return v

    @field_validator("raw_dtype")
    @classmethod
    def _numeric_dtype(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import numpy as np

        try:
            dt = np.dtype(v)
        except TypeError:
            dt = None
        if dt is None or dt.kind not in "uif":
            raise ValueError(
                f"not a numeric NumPy data type {v!r} (e.g. uint8, uint16, '<u2', float32)"
            )
        return v

    @model_validator(mode="after")
    def _needs_file(self) -> ParticleConfig:
        if self.source in ("ct", "surface") and self.file is None:
            raise ValueError(f"particle source '{self.source}' needs 'file'")
        if self.source == "ct" and self.voxel_size_um is None:
            raise ValueError("particle source 'ct' needs 'voxel_size_um'")
        if self.file is not None and str(self.file).endswith(".raw"):
            if self.raw_shape is None or self.raw_dtype is None:
                raise ValueError("a .raw CT volume needs 'raw_shape' [nz, ny, nx] and 'raw_dtype'")
        if self.source != "ct" and self.select is not None:
            raise ValueError(f"'select' is for source 'ct' (got source '{self.source}')")
        if self.select is None:
            # values, not fields_set: a dumped case (run.json) holds every default
            fields = type(self).model_fields
            extra = [k for k in _CT_KEYS if getattr(self, k) != fields[k].default]
            if isinstance(self.voxel_size_um, tuple):
                extra.append("voxel_size_um with three values")
            if extra:
                raise ValueError(
                    f"{', '.join(extra)}: only for a CT electrode scan (source 'ct' with "
                    "'select', e.g. select: largest_interior)"
                )
        return self

    @property
    def nominal_diameter_um(self) -> float | None:
        """The diameter the size checks can use before meshing (µm); None for a CT scan."""
        if self.source == "ct":
            return self.rescale_to_diameter_um
        return self.diameter_um


class GrainsConfig(StrictModel):
    """Voronoi primary grains; ``count: 0`` makes the particle a single grain."""

    count: Annotated[int, Field(ge=0, le=99999)] = 400
    seed: int = 1
    min_edge_um: Positive = 0.05


class AdaptConfig(StrictModel):
    """Adaptive local refinement during a run with fracture (docs/adaptivity.md).

    After every ``every_steps`` accepted steps, particle cells where the phase field exceeds
    ``phi_threshold``, or where the predicted damage of the driving force
    D = ``predictor_growth`` x max(H, psi+) exceeds ``predictor_threshold``, grow by
    ``buffer_layers`` rings of neighbours; those coarser than the nominal size h_over_l x
    min(l, l_γ) (not below ``h_min_um``; sizes as in the resolution rule, counted in halvings of
    the base mesh) are refined (Plaza), and the run continues on the new mesh with every field
    transferred. The step that marked cells is computed again on the new mesh from its start
    (corrector), at most ``max_corrections`` times; the history field moves by
    ``history_transfer``. The predicted damage is ``predictor``: ``local``, the pointwise AT2
    value 2Dl/(Gc + 2Dl); ``phase_field``, the AT2 phase field of D solved on the current mesh
    (one linear solve per marking; it does not mark drive peaks narrower than l).
    """

    phi_threshold: Fraction = 0.3
    predictor_threshold: Fraction | None = 0.3
    predictor_growth: Annotated[float, Field(ge=1.0, le=10.0)] = 1.5
    predictor: Literal["local", "phase_field"] = "local"
    buffer_layers: Annotated[int, Field(ge=0, le=5)] = 1
    h_over_l: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    h_min_um: Positive | None = None
    max_unknowns: PositiveInt | None = None
    every_steps: PositiveInt = 1
    max_corrections: Annotated[int, Field(ge=0, le=5)] = 1
    history_transfer: Literal["parent_max", "fit"] = "parent_max"


class MeshConfig(StrictModel):
    """Target element sizes (µm) of the gmsh mesh, uniform refinement levels in DOLFINx and
    (optional) adaptive refinement during the run."""

    particle_size_um: Positive = 0.4
    binder_size_um: Positive = 2.0
    refine_levels: Annotated[int, Field(ge=0, le=4)] = 0
    adapt: AdaptConfig | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_adapt(self, handler):
        # a case without adaptivity dumps as before it existed: bundles built then still match
        out = handler(self)
        if out.get("adapt") is None:
            out.pop("adapt", None)
        return out


class GeometryConfig(StrictModel):
    """Particle, grains, binder shell and mesh; or an existing mesh bundle."""

    particle: ParticleConfig = ParticleConfig()
    grains: GrainsConfig = GrainsConfig()
    binder_outer_diameter_um: Positive = 20.0
    mesh: MeshConfig = MeshConfig()
    bundle: Path | None = None

    @model_validator(mode="after")
    def _binder_outside(self) -> GeometryConfig:
        # a CT particle's size is known only after segmentation (meshing checks it then)
        d = self.particle.nominal_diameter_um
        key = "rescale_to_diameter_um" if self.particle.source == "ct" else "diameter_um"
        if d is None:
            return self
        if self.binder_outer_diameter_um <= d:
            raise ValueError(
                f"binder_outer_diameter_um ({self.binder_outer_diameter_um}) must exceed "
                f"particle.{key} ({d})"
            )
        if self.mesh.particle_size_um >= d / 2:
            raise ValueError(
                f"mesh.particle_size_um ({self.mesh.particle_size_um}) must be smaller than the "
                f"particle radius ({d / 2} µm)"
            )
        return self


class MaterialConfig(StrictModel):
    """Parameter set by name (``params/<set>.yaml``) or path, and overrides of its values."""

    set: str = "nmc811_parks2023"
    overrides: dict[str, Any] = {}


class CCStep(StrictModel):
    """Constant current at ``c_rate`` (1C empties the theoretical capacity in 1 h) until a voltage."""

    type: Literal["cc"]
    c_rate: Positive
    until_voltage_V: float
    direction: Literal["charge", "discharge"] = "charge"
    max_time_s: Positive | None = None


class CVStep(StrictModel):
    """Constant voltage until the current drops below ``until_c_rate`` or ``max_time_s`` passes."""

    type: Literal["cv"]
    voltage_V: float
    until_c_rate: Positive | None = None
    max_time_s: Positive | None = None

    @model_validator(mode="after")
    def _has_stop(self) -> CVStep:
        if self.until_c_rate is None and self.max_time_s is None:
            raise ValueError("a 'cv' step needs 'until_c_rate' or 'max_time_s' (or both)")
        return self


class RestStep(StrictModel):
    """Open circuit (zero current) for ``duration_s``."""

    type: Literal["rest"]
    duration_s: Positive


Step = Annotated[Union[CCStep, CVStep, RestStep], Field(discriminator="type")]  # noqa: UP007


#: values of ``physics.mode``
PHYSICS_MODES = ("coupled", "quasistatic")


class GrainHeterogeneityConfig(StrictModel):
    """Per-grain scatter, drawn once from ``seed`` (polycrack.physics.mechanisms.grain_draws):
    an OCP shift ΔU_g (normal, standard deviation in V) and factors on the exchange current
    density and on D (lognormal with mean 1, standard deviation of the logarithm). Quasi-static
    mode uses the OCP shift only (each grain at U(x_g) + ΔU_g = the common Li potential); the i0
    and D factors need ``physics.mode: coupled``. Not stated in Parks 2023."""

    ocp_shift_std_V: Annotated[float, Field(ge=0.0, le=0.2)] = 0.0
    i0_log_std: Annotated[float, Field(ge=0.0, le=3.0)] = 0.0
    D_log_std: Annotated[float, Field(ge=0.0, le=3.0)] = 0.0
    seed: NonNegativeInt = 0

    @property
    def enabled(self) -> bool:
        return self.ocp_shift_std_V > 0.0 or self.i0_log_std > 0.0 or self.D_log_std > 0.0


class MechanismsConfig(StrictModel):
    """Damage mechanisms beyond Parks 2023 (issue 22; docs/model.md section 3.10), all off by
    default; run.json labels each as in the paper or not, with its source."""

    grain_heterogeneity: GrainHeterogeneityConfig = GrainHeterogeneityConfig()
    #: ``oregan2022``: D(x) of NMC811 (O'Regan et al., Electrochim. Acta 425 (2022) 140700)
    #: instead of ``electrochemistry.D_m2_s``; coupled mode only
    diffusivity_of_x: Literal["none", "oregan2022"] = "none"
    #: scale the lithiation eigenstrain by 1 - h(γ), h = (1 - γ)²: none on grain boundaries
    gb_eigenstrain_weight: bool = False
    #: ``xu2017``: Gc(x) = Gc · (K_c(x)/K_c(x0))², K_c of NMC532 secondary particles on the first
    #: charge (Xu et al., J. Electrochem. Soc. 164 (2017) A3333); ``none``: Gc independent of x
    toughness_of_x: Literal["none", "xu2017"] = "none"


class PhysicsConfig(StrictModel):
    """Which fields are solved. Electrochemistry is always on."""

    mechanics: bool = True
    fracture: bool = True
    outer_boundary: Literal["clamped", "traction_free"] = "clamped"
    displacement_degree: Literal[1, 2] = 1
    #: viscous regularisation of the phase field (docs/model.md section 3.7; off by default): the φ
    #: equation gains (Gc/l) τ ∂φ/∂t (backward Euler), τ this relaxation time in s; the
    #: viscosity η of Miehe, Hofacker, Welschinger, CMAME 199 (2010) 2765. It turns an unstable
    #: crack advance at fixed load into a fast but finite one that small steps can follow; the
    #: rate-independent model is the limit τ -> 0 (docs/user-guide.md section 6)
    phase_field_relaxation_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 0.0
    #: ``coupled``: x and V solved on the particle mesh with mechanics and fracture;
    #: ``quasistatic``: x uniform, following the protocol's charge (the rate-independent limit
    #: of a slow charge), V = U(x) + Butler-Volmer overpotential, mechanics + fracture per load
    #: step (polycrack.problems.quasistatic.QuasiStaticProblem; ``polycrack check`` estimates
    #: the radial Li spread that this neglects)
    mode: Literal["coupled", "quasistatic"] = "coupled"
    #: optional damage mechanisms (issue 22), each off by default (docs/model.md section 3.10)
    mechanisms: MechanismsConfig = MechanismsConfig()

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, v: Any) -> Any:
        if not isinstance(v, str) or v not in PHYSICS_MODES:
            hint = suggest(v, list(PHYSICS_MODES)) if isinstance(v, str) else ""
            raise ValueError(
                "must be 'coupled' (x and V solved on the mesh) or 'quasistatic' (x uniform, "
                f"for slow charges){hint if hint.startswith(';') else ''}"
            )
        return v

    @model_validator(mode="after")
    def _fracture_needs_mechanics(self) -> PhysicsConfig:
        if self.fracture and not self.mechanics:
            raise ValueError("fracture: true needs mechanics: true")
        if self.mode == "quasistatic" and not self.mechanics:
            raise ValueError(
                "mode: quasistatic solves mechanics per load step and needs mechanics: true "
                "(an electrochemistry-only run is mode: coupled with mechanics: false)"
            )
        het, mech = self.mechanisms.grain_heterogeneity, self.mechanisms
        if self.mode == "quasistatic":
            for key in ("i0_log_std", "D_log_std"):
                if getattr(het, key) > 0.0:
                    raise ValueError(
                        f"mechanisms.grain_heterogeneity.{key} needs mode: coupled: in "
                        "quasi-static mode x is uniform in every grain and neither the kinetics "
                        "nor D set it (use ocp_shift_std_V, which gives each grain its own x)"
                    )
        if self.mode == "quasistatic" and mech.diffusivity_of_x != "none":
            raise ValueError(
                "mechanisms.diffusivity_of_x needs mode: coupled: quasi-static mode has no Li "
                "transport (x is uniform)"
            )
        if not self.fracture:
            if mech.gb_eigenstrain_weight:
                raise ValueError(
                    "mechanisms.gb_eigenstrain_weight needs fracture: true (the grain-boundary "
                    "field γ is part of the fracture model)"
                )
            if mech.toughness_of_x != "none":
                raise ValueError("mechanisms.toughness_of_x needs fracture: true")
        return self


class SolverConfig(StrictModel):
    """Nonlinear/linear solver and adaptive time stepping."""

    #: ``auto``: ``mumps`` up to solver.coupled.AUTO_MUMPS_MAX_UNKNOWNS unknowns, else
    #: ``fieldsplit`` (docs/user-guide.md section 6; benchmarks/results/coupled_solvers_*.json)
    linear: Literal["auto", "mumps", "mumps_lagged", "fieldsplit", "staggered"] = "auto"
    #: linear solver of the staggered sub-solves (u with φ fixed, φ with u fixed), used by
    #: ``linear: staggered`` and by the fallback: ``auto`` = ``mumps`` (LU) up to
    #: solver.coupled.AUTO_MUMPS_MAX_UNKNOWNS unknowns, else ``iterative`` (GMRES + GAMG)
    staggered_linear: Literal["auto", "mumps", "iterative"] = "auto"
    dt_initial_s: Positive = 10.0
    dt_min_s: Positive = 1e-3
    dt_max_s: Positive = 3600.0
    time_rtol: Positive = 1e-3
    newton_rtol: Positive = 1e-9
    newton_atol: Positive = 1e-10
    #: converged steps take 2-5 iterations; a failing attempt at the 400-grain damage onset ran
    #: 23 iterations (534 s) before giving up, so fail at 12 and cut dt instead (steps needing
    #: more than max(4, this / 2) iterations are shortened)
    newton_max_iterations: Annotated[int, Field(ge=1, le=200)] = 12
    max_dphi_per_step: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    max_retries: Annotated[int, Field(ge=0, le=50)] = 8
    event_voltage_tol_V: Positive = 1e-4
    #: life of the ``fieldsplit`` split preconditioners (GAMG set-ups): ``off`` = a set-up at
    #: every Newton iteration; ``newton`` = kept over the Newton iterations of a step attempt;
    #: ``steps`` = kept across steps too. A kept one is set up again when the Krylov count grows
    #: by half, after a failed or rejected attempt and after a staggered fallback
    #: (polycrack.numerics.nonlinear.PreconditionerLifeCycle; benchmarks/README.md). Default
    #: ``newton``: the same Krylov counts as ``off`` with a quarter of the set-ups; ``steps``
    #: saved more set-ups on the demo but took 26 % more Krylov iterations (12 linear solves ran
    #: into the iteration limit), so it is opt-in until a quiet-machine run shows it pays
    preconditioner_reuse: Literal["off", "newton", "steps"] = "newton"

    @field_validator("preconditioner_reuse", mode="before")
    @classmethod
    def _reuse_off(cls, v):
        """YAML reads an unquoted ``off`` as false."""
        return "off" if v is False else v

    #: extra PETSc options of the coupled Newton solver, relative to its prefix and without the
    #: dash, e.g. ``{fieldsplit_f2_pc_gamg_agg_nsmooths: 0}`` (fieldsplit fields: f0 x, f1 V,
    #: f2 u, f3 φ; quasi-static mode has f2 and f3 only) or ``{ksp_max_it: 200}``; applied after
    #: polycrack's own, so they win. PETSc lists options it did not use at exit.
    petsc_options: dict[str, str | bool | int | float] = {}

    @field_validator("petsc_options")
    @classmethod
    def _petsc_keys(cls, v: dict) -> dict:
        for k in v:
            if not k or k.startswith("-") or not all(c.isalnum() or c == "_" for c in k):
                raise ValueError(
                    f"PETSc option {k!r}: give the name without the leading dash, letters, "
                    "digits and '_' only (e.g. ksp_max_it)"
                )
        return v

    @model_validator(mode="after")
    def _dt_order(self) -> SolverConfig:
        if not self.dt_min_s <= self.dt_initial_s <= self.dt_max_s:
            raise ValueError(
                f"need dt_min_s <= dt_initial_s <= dt_max_s (got {self.dt_min_s}, "
                f"{self.dt_initial_s}, {self.dt_max_s})"
            )
        return self


class OutputConfig(StrictModel):
    """What the run directory receives and how often."""

    dir: Path | None = None
    fields_at_voltages_V: list[float] = [4.0, 4.2, 4.5]
    field_every_steps: Annotated[int, Field(ge=0)] = 0
    checkpoint_every_steps: Annotated[int, Field(ge=0)] = 20
    checkpoint_every_minutes: Annotated[float, Field(ge=0.0)] = 10.0


class Case(StrictModel):
    """A whole case file."""

    name: str | None = None
    geometry: GeometryConfig = GeometryConfig()
    material: MaterialConfig = MaterialConfig()
    protocol: Annotated[list[Step], Field(min_length=1)]
    physics: PhysicsConfig = PhysicsConfig()
    solver: SolverConfig = SolverConfig()
    output: OutputConfig = OutputConfig()


CASE_SECTIONS = tuple(Case.model_fields)

# ---------------------------------------------------------------------------------------------
# Errors with key paths and suggestions
# ---------------------------------------------------------------------------------------------


def _unwrap(tp: Any) -> list[Any]:
    """Model classes reachable from an annotation (Optional, Union, list, Annotated)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        out = []
        for a in typing.get_args(tp):
            out += _unwrap(a)
        return out
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return []


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """Walk a pydantic error location down to the model class that owns its last key."""
    models: list[type[BaseModel]] = [root]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in models:
            if part in m.model_fields:
                nxt += _unwrap(m.model_fields[part].annotation)
            else:  # discriminated-union tag, e.g. ('protocol', 0, 'cc', ...)
                for sub in _unwrap(m):
                    f = sub.model_fields.get("type")
                    if f is not None and part in typing.get_args(f.annotation):
                        nxt.append(sub)
        if not nxt:
            return models[0] if len(models) == 1 else None
        models = nxt
    return models[0] if models else None


def suggest(key: str, allowed: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest allowed name, or a list of the allowed names."""
    low = {a.lower(): a for a in allowed}
    if key.lower() in low:  # wrong capitalisation only, e.g. 'Gc_gb_J_m2'
        return f"; did you mean '{low[key.lower()]}'?"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if not close:
        close = [low[c] for c in difflib.get_close_matches(key.lower(), list(low), n=1, cutoff=0.6)]
    if close:
        return f"; did you mean '{close[0]}'?"
    return f" (allowed: {', '.join(sorted(allowed))})"


def _fmt_loc(loc: tuple, prefix: str = "") -> str:
    s = prefix
    for part in loc:
        if isinstance(part, int):
            s += f"[{part}]"
        else:
            s += ("." if s else "") + str(part)
    return s or "<top level>"


def format_validation_error(
    err: ValidationError, root: type[BaseModel], source: str, prefix: str = ""
) -> str:
    """Turn a pydantic error into lines ``source: key.path: message``."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        # drop the discriminator tag pydantic inserts into union locations
        shown = tuple(
            p
            for i, p in enumerate(loc)
            if not (i > 0 and isinstance(loc[i - 1], int) and p in ("cc", "cv", "rest"))
        )
        where = _fmt_loc(shown, prefix)
        if e["type"] == "extra_forbidden":
            model = _model_at(root, loc[:-1])
            allowed = list(model.model_fields) if model else []
            lines.append(f"{source}: {where}: unknown key{suggest(str(loc[-1]), allowed)}")
        elif e["type"] == "union_tag_invalid":
            lines.append(
                f"{source}: {where}: unknown step type {e['input'].get('type')!r} "
                "(allowed: cc, cv, rest)"
            )
        elif e["type"] == "union_tag_not_found":
            lines.append(f"{source}: {where}: protocol step needs 'type' (cc, cv or rest)")
        elif e["type"] == "missing":
            lines.append(f"{source}: {where}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            # a whole section (model-level check) is not worth echoing
            lines.append(
                f"{source}: {where}: {msg}" + ("" if isinstance(got, dict) else f" (got {got!r})")
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML says keys are
    unique; PyYAML would silently keep the last value). Merge keys (``<<``) still override."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first given on line {seen[key] + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused (:class:`UniqueKeyLoader`)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = load_yaml_text(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of keys at the top level")
    return data


def find_parameter_set(name: str, relative_to: Path | None = None) -> Path:
    """Resolve a parameter-set name (``params/<name>.yaml``) or a path."""
    cand = Path(name)
    if relative_to is not None and not cand.is_absolute():
        rel = Path(relative_to).parent / cand
        if rel.is_file():
            return rel.resolve()
    if cand.is_file():
        return cand.resolve()
    shipped = _params.PARAMS_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    raise InputError(
        f"material.set: no parameter set {name!r}{suggest(name, _params.available())} "
        f"(a shipped name or a path to a YAML file)"
    )


def _split_values(raw: dict, path: Path) -> tuple[dict, dict]:
    """Split ``{key: {value, source}}`` leaves into plain values and a ``sources`` mapping."""
    values: dict = {}
    sources: dict = {}
    for key, section in raw.items():
        if key not in PARAM_SECTIONS:
            values[key] = section
            continue
        if not isinstance(section, dict):
            raise InputError(f"{path}: {key}: expected a mapping of parameters")
        values[key] = {}
        for k, v in section.items():
            if isinstance(v, dict):
                extra = set(v) - {"value", "source"}
                if "value" not in v or extra:
                    raise InputError(
                        f"{path}: {key}.{k}: expected {{value: ..., source: ...}} or a plain value"
                    )
                values[key][k] = v["value"]
                src = v.get("source")
                sources[f"{key}.{k}"] = (
                    src if isinstance(src, str) and src.strip() else UNSPECIFIED_SOURCE
                )
            else:
                values[key][k] = v
                sources[f"{key}.{k}"] = UNSPECIFIED_SOURCE
    return values, sources


#: the source recorded for a parameter-set value given without one
UNSPECIFIED_SOURCE = "unspecified"


def is_shipped_set(path: Path) -> bool:
    """The parameter set is one of polycrack's own (``params/``)."""
    return Path(path).resolve().parent == _params.PARAMS_DIR.resolve()


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v and k not in ("value",):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def parse_set(expr: str) -> tuple[str, Any]:
    """``'a.b=1e-14'`` -> ``('a.b', 1e-14)``; the value is parsed as YAML."""
    if "=" not in expr:
        raise InputError(f"--set {expr!r}: expected key=value, e.g. fracture.Gc_GB_J_m2=3.0")
    key, _, text = expr.partition("=")
    key = key.strip()
    if not key:
        raise InputError(f"--set {expr!r}: empty key")
    try:
        value = load_yaml_text(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


#: Largest |V_set - V| (V) a ``cv`` step may start with. A potentiostatic jump of ~1 V drives a
#: Butler-Volmer current ~e^17 times the exchange current: the surface saturates within
#: milliseconds and the stepper spends minutes cutting dt (a CV at 4.5 V from 3.62 V was seen
#: retrying for > 5 min). Such a step is a protocol mistake (a missing ``cc`` before the hold).
#: Checked from the file (:func:`protocol_problems`) and at run time (polycrack.workflow.protocol).
CV_MAX_JUMP_V = 0.25


class ResolvedCase:
    """A validated case with its resolved parameter set.

    Attributes: ``case`` (Case), ``params`` (Parameters), ``sources`` (key -> citation),
    ``case_path``, ``params_path`` and ``warnings`` (lines that ``check`` and ``run`` print).
    """

    def __init__(
        self, case: Case, params: Parameters, sources: dict[str, str], case_path, params_path
    ):
        self.case = case
        self.params = params
        self.sources = sources
        self.case_path = Path(case_path) if case_path else None
        self.params_path = Path(params_path)
        self.warnings: list[str] = []

    @property
    def lattice_table_path(self) -> Path:
        """The lattice-strain table: the registry's for ``mechanics.lattice_data``, else
        ``mechanics.lattice_table`` relative to the parameter-set file."""
        if self.params.mechanics.lattice_data is not None:
            from .physics import strain_data

            return strain_data.get(self.params.mechanics.lattice_data).table
        p = Path(self.params.mechanics.lattice_table)
        if p.is_absolute():
            return p
        local = self.params_path.parent / p
        # a copied parameter set may keep the shipped relative name: fall back to params/
        return (
            local
            if local.exists() or not (_params.PARAMS_DIR / p).exists()
            else _params.PARAMS_DIR / p
        )

    def to_dict(self) -> dict:
        """JSON-ready record of everything resolved (for run.json)."""
        return {
            "case_file": str(self.case_path) if self.case_path else None,
            "parameter_set_file": str(self.params_path),
            "case": self.case.model_dump(mode="json"),
            "parameters": self.params.model_dump(mode="json"),
            "sources": dict(self.sources),
        }


def load_parameters(
    path: Path, overrides: dict[str, Any] | None = None, override_source: str = "override"
) -> tuple[Parameters, dict[str, str]]:
    """Load and validate a parameter-set file, applying dotted or nested overrides.

    Every value of a shipped set (``params/``) must name its source; a user set may leave it
    out (``resolve_case`` then warns).
    """
    path = Path(path)
    values, sources = _split_values(read_yaml(path), path)
    missing = sorted(k for k, v in sources.items() if v == UNSPECIFIED_SOURCE)
    if missing and is_shipped_set(path):
        raise InputError(
            f"{path}: {', '.join(missing)}: no source; every value of a shipped parameter set "
            "is written {value: ..., source: ...}"
        )
    for key, val in _flatten(overrides or {}).items():
        section = key.split(".")[0]
        if section not in PARAM_SECTIONS:
            raise InputError(
                f"{override_source}: {key}: unknown parameter section{suggest(section, list(PARAM_SECTIONS))}"
            )
        _set_path(values, key, val)
        sources[key] = override_source
    try:
        p = Parameters.model_validate(values)
    except ValidationError as exc:
        src = str(path) if not overrides else f"{path} (with {override_source})"
        raise InputError(format_validation_error(exc, Parameters, src)) from None
    return p, sources


def protocol_problems(rc: ResolvedCase, source: str) -> list[str]:
    """What the protocol gets wrong that follows from the file alone.

    The voltage at the start of each step is known from the previous step where that step ends
    at a fixed voltage (a ``cc`` step without ``max_time_s`` within ``event_voltage_tol_V`` of
    its cut-off, a ``cv`` step at its set voltage; the first step starts at U(x0)); after a
    ``rest`` or a time-limited ``cc`` it is only bracketed. A charge must end above and a
    discharge below where it starts, and a ``cv`` step must not jump by more than
    :data:`CV_MAX_JUMP_V` (the run would stop there with exit 2).
    """
    from .physics import materials  # local: materials imports nothing from here

    ec = rc.params.electrochemistry
    tol = rc.case.solver.event_voltage_tol_V
    lo_ocp, hi_ocp = materials.ocp_range_V(ec.ocp)
    u0 = float(materials.ocp_V(ec.x0, model=ec.ocp))
    start: tuple[float, float] | None = (u0, u0)  # bracket of the voltage a step starts at
    problems = []

    def where(i: int) -> str:
        if i == 0:
            return f"the open-circuit voltage at x0 = {ec.x0} ({u0:.3f} V)"
        prev = rc.case.protocol[i - 1]
        at = (
            f"{start[0]:.3f} V"
            if start[1] - start[0] < 0.01
            else (f"{start[0]:.3f}-{start[1]:.3f} V")
        )
        return f"where protocol[{i - 1}] ({prev.type}) ends, {at}"

    for i, step in enumerate(rc.case.protocol):
        v = getattr(step, "until_voltage_V", None)
        key = "until_voltage_V"
        if v is None:
            v, key = getattr(step, "voltage_V", None), "voltage_V"
        if v is not None and not lo_ocp < v < hi_ocp:
            problems.append(
                f"{source}: protocol[{i}].{key}: {v} V is outside the OCP range "
                f"({lo_ocp:.3f}-{hi_ocp:.3f} V of '{ec.ocp}'); it can never be reached"
            )
        nxt: tuple[float, float] | None = None
        if isinstance(step, CCStep):
            vt = step.until_voltage_V
            charge = step.direction == "charge"
            if start is not None:
                if charge and vt <= start[0]:
                    problems.append(
                        f"{source}: protocol[{i}].until_voltage_V: {vt} V is below "
                        f"{where(i)}; a charge only raises V"
                    )
                elif not charge and vt >= start[1]:
                    problems.append(
                        f"{source}: protocol[{i}].until_voltage_V: {vt} V is above "
                        f"{where(i)}; a discharge only lowers V"
                    )
            if step.max_time_s is None:
                nxt = (vt - tol, vt + tol)
            elif start is not None:  # stopped by time: between the start and the cut-off
                nxt = (min(start[0], vt - tol), max(start[1], vt + tol))
        elif isinstance(step, CVStep):
            if start is not None:
                gap = max(start[0] - step.voltage_V, step.voltage_V - start[1], 0.0)
                if gap > CV_MAX_JUMP_V:
                    problems.append(
                        f"{source}: protocol[{i}].voltage_V: a cv step at {step.voltage_V} V "
                        f"starts {where(i)}: a potentiostatic jump of {gap:.3g} V "
                        f"(> {CV_MAX_JUMP_V} V) stops the run there; put a cc step with "
                        f"until_voltage_V: {step.voltage_V:g} before it"
                    )
                elif gap > tol:
                    rc.warnings.append(
                        f"{source}: protocol[{i}].voltage_V: the cv step at {step.voltage_V} V "
                        f"starts {where(i)}, a jump of {gap:.3g} V"
                    )
            nxt = (step.voltage_V, step.voltage_V)
        start = nxt  # rest: the voltage relaxes to an unknown open-circuit value
    return problems


def lattice_table_problems(rc: ResolvedCase) -> list[str]:
    """Read the lattice-strain table as the run will (``materials.LatticeStrains``)."""
    from .physics import materials

    path = rc.lattice_table_path
    if not path.is_file():
        return [f"{rc.params_path}: mechanics.lattice_table: no file {path}"]
    try:
        materials.LatticeStrains.from_params(rc.params, path)
    except (ValueError, OSError) as exc:
        return [f"{rc.params_path}: mechanics.lattice_table: {exc}"]
    return []


def check_consistency(rc: ResolvedCase, source: str) -> None:
    """Cross-checks between protocol, parameters and the lattice table."""
    from .physics import materials  # local: materials imports nothing from here

    lo, hi = materials.ocp_range_V(rc.params.electrochemistry.ocp)
    problems = protocol_problems(rc, source)
    m = rc.params.mechanics
    if m.strain_mapping == "normalised" and not lo < m.strain_map_voltage_V < hi:
        problems.append(
            f"{source}: mechanics.strain_map_voltage_V: {m.strain_map_voltage_V} V is outside the "
            f"OCP range ({lo:.3f}-{hi:.3f} V)"
        )
    for i, an in enumerate(m.strain_map_anchors if m.strain_mapping == "anchors" else []):
        if an.voltage_V is not None and not lo < an.voltage_V < hi:
            problems.append(
                f"{source}: mechanics.strain_map_anchors[{i}].voltage_V: {an.voltage_V} V is "
                f"outside the OCP range ({lo:.3f}-{hi:.3f} V)"
            )
    problems += lattice_table_problems(rc)
    if problems:
        raise InputError("\n".join(problems))


def load_case(path: Path | str, sets: list[str] | None = None) -> ResolvedCase:
    """Read, override (``--set key=value``) and validate a case file and its parameter set.

    A ``--set`` key whose first part is a case section (geometry, material, protocol, physics,
    solver, output) changes the case; one whose first part is a parameter section
    (electrochemistry, mechanics, fracture) overrides the parameter set.
    """
    path = Path(path)
    raw = read_yaml(path)
    return resolve_case(raw, path, sets)


#: the files of a mesh bundle (ARCHITECTURE.md section 3.2)
BUNDLE_FILES = ("mesh.msh", "grains.csv", "mesh.json")

#: file paths of a case file: relative ones are taken from the case file's folder (relative
#: ones given with --set from the working directory)
PATH_KEYS = ("geometry.particle.file", "geometry.bundle")


def _set_case_value(raw: dict, expr: str, key: str, value: Any) -> None:
    """Apply one ``--set`` to the raw case (list indices 0..n-1)."""
    parts = key.split(".")
    node: Any = raw
    try:
        for p in parts[:-1]:
            if isinstance(node, list):
                node = node[_index(p, node)]
            else:
                node = node.setdefault(p, {})
        if isinstance(node, list):
            node[_index(parts[-1], node)] = value
        else:
            node[parts[-1]] = value
    except (ValueError, IndexError, TypeError, AttributeError) as exc:
        why = f": {exc}" if isinstance(exc, IndexError) else ""
        raise InputError(f"--set {expr}: cannot set {key!r} in this case file{why}") from None


def _index(part: str, node: list) -> int:
    i = int(part)
    if not 0 <= i < len(node):
        raise IndexError(f"index {part} is not in 0..{len(node) - 1}")
    return i


def _resolve_paths(case: Case, path: Path | None, from_cwd: set[str]) -> None:
    """Make the relative file paths of ``case`` absolute: case-file folder (or cwd for --set)."""
    base = Path(path).resolve().parent if path else Path.cwd()
    geo = case.geometry
    for key in PATH_KEYS:
        owner = geo.particle if key.endswith("file") else geo
        name = key.rsplit(".", 1)[1]
        val = getattr(owner, name)
        if val is None or Path(val).is_absolute():
            continue
        root = Path.cwd() if key in from_cwd else base
        setattr(owner, name, (root / val).resolve())


def read_bundle_settings(bundle: Path) -> dict:
    """The geometry settings stored in a bundle's ``mesh.json`` (errors name the file)."""
    missing = [f for f in BUNDLE_FILES if not (bundle / f).is_file()]
    if not bundle.is_dir() or missing:
        what = "no such directory" if not bundle.exists() else f"missing {', '.join(missing)}"
        raise InputError(
            f"geometry.bundle: {bundle}: not a mesh bundle ({what}); build one with "
            "polycrack mesh CASE -o DIR"
        )
    import json

    try:
        info = json.loads((bundle / "mesh.json").read_text())
        settings = info["settings"]
        if not isinstance(settings, dict):
            raise TypeError("'settings' is not a mapping")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise InputError(
            f"geometry.bundle: {bundle / 'mesh.json'}: corrupt bundle description "
            f"({type(exc).__name__}: {exc}); build the bundle again"
        ) from None
    return settings


def _explicit(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> values of the fields given explicitly (not defaulted) in ``model``."""
    out: dict[str, Any] = {}
    for name in model.model_fields_set:
        v = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(v, BaseModel):
            out.update(_explicit(v, key + "."))
        else:
            out[key] = v
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
    if isinstance(a, Path) or isinstance(b, Path):
        return a is not None and b is not None and Path(a) == Path(b)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _adopt_bundle(case: Case, source: str) -> None:
    """Take the geometry from ``geometry.bundle``; a value the case gives explicitly must agree.

    The run meshes nothing when a bundle is named, so the bundle's settings are what is solved
    and what run.json records; a conflicting explicit value is an error instead of being
    silently ignored. ``mesh.refine_levels`` and ``mesh.adapt`` are the exceptions: refinement
    happens when the bundle is loaded or during the run, so the case's values are used.
    """
    bundle = Path(case.geometry.bundle)
    settings = read_bundle_settings(bundle)
    try:
        stored = GeometryConfig.model_validate({**settings, "bundle": None})
    except ValidationError as exc:
        raise InputError(
            format_validation_error(exc, GeometryConfig, str(bundle / "mesh.json"), "settings")
        ) from None
    conflicts = []
    for key, val in _explicit(case.geometry).items():
        if key in ("bundle", "mesh.refine_levels") or key.startswith("mesh.adapt"):
            continue
        obj: Any = stored
        for part in key.split("."):
            obj = getattr(obj, part)
        if not _same(val, obj):
            conflicts.append(f"geometry.{key} = {val} (the bundle has {obj})")
    if conflicts:
        raise InputError(
            f"{source}: geometry.bundle {bundle} was built for other geometry settings: "
            + "; ".join(conflicts)
            + ". Remove these keys from the case (the bundle's values are used) or build a new "
            "bundle with polycrack mesh"
        )
    stored.bundle = bundle
    if "refine_levels" in case.geometry.mesh.model_fields_set:
        stored.mesh.refine_levels = case.geometry.mesh.refine_levels
    stored.mesh.adapt = case.geometry.mesh.adapt  # a run-time choice, not the bundle's
    case.geometry = stored


def resolve_case(raw: dict, path: Path | None, sets: list[str] | None = None) -> ResolvedCase:
    """Validate an in-memory case mapping (``path`` for messages and relative files).

    Relative file paths (:data:`PATH_KEYS`) are resolved against the case file's folder (those
    given with ``--set`` against the working directory); a ``geometry.bundle`` must be a
    readable bundle and replaces the geometry settings (see :func:`_adopt_bundle`).
    """
    raw = copy.deepcopy(raw)
    source = str(path) if path else "<case>"
    param_sets: dict[str, Any] = {}
    from_cwd: set[str] = set()
    for expr in sets or []:
        key, value = parse_set(expr)
        head = key.split(".")[0]
        if head in CASE_SECTIONS:
            _set_case_value(raw, expr, key, value)
            if key in PATH_KEYS:
                from_cwd.add(key)
        elif head in PARAM_SECTIONS:
            param_sets[key] = value
        else:
            raise InputError(
                f"--set {expr}: unknown key {head!r}"
                f"{suggest(head, list(CASE_SECTIONS) + list(PARAM_SECTIONS))}"
            )
    try:
        case = Case.model_validate(raw)
    except ValidationError as exc:
        src = source + (" (with --set)" if sets else "")
        raise InputError(format_validation_error(exc, Case, src)) from None
    _resolve_paths(case, path, from_cwd)
    if case.geometry.bundle is not None:
        _adopt_bundle(case, source)

    ppath = find_parameter_set(case.material.set, relative_to=path)
    overrides = dict(_flatten(case.material.overrides))
    params, sources = load_parameters(
        ppath, overrides, override_source=f"{source}: material.overrides"
    )
    if param_sets:
        params, _ = load_parameters(ppath, {**overrides, **param_sets}, override_source="--set")
        sources.update({k: "--set" for k in param_sets})
    rc = ResolvedCase(case, params, sources, path, ppath)
    missing = sorted(k for k, v in sources.items() if v == UNSPECIFIED_SOURCE)
    if missing:
        rc.warnings.append(
            f"{ppath}: no source given for {', '.join(missing)} (write "
            "{value: ..., source: ...} so that run.json records where each value comes from)"
        )
    check_consistency(rc, source)
    return rc


def input_file_problems(rc: ResolvedCase) -> list[str]:
    """Files the case reads that are missing or unreadable (``check``, ``mesh``, ``run``).

    The particle file (CT volume or surface) is only read when a bundle is built; this looks at
    its existence, and for CT volumes at what can be known cheaply (a .npy header, the size of a
    .raw file against ``raw_shape`` and ``raw_dtype``).
    """
    p = rc.case.geometry.particle
    if p.file is None or rc.case.geometry.bundle is not None:
        return []
    f = Path(p.file)
    key = "geometry.particle.file"
    hint = f" (relative paths in {rc.case_path} are taken from its folder)" if rc.case_path else ""
    if not f.exists():
        return [f"{key}: {f}: no such file{hint}"]
    if p.source != "ct" or f.is_dir():
        return []
    import numpy as np

    suf = f.suffix.lower()
    try:
        if suf == ".npy":
            head = np.load(f, mmap_mode="r")  # reads the header only
            shape, dtype = head.shape, head.dtype
            del head
            if len(shape) != 3:
                return [f"{key}: {f}: expected a 3D volume, the array has shape {shape}"]
            if dtype.kind not in "uifb":
                return [f"{key}: {f}: not a numeric volume (dtype {dtype})"]
        elif suf == ".raw":
            want = int(np.prod(p.raw_shape)) * np.dtype(p.raw_dtype).itemsize
            have = f.stat().st_size
            if have != want:
                return [
                    f"{key}: {f}: {have} bytes, but raw_shape {list(p.raw_shape)} of "
                    f"{p.raw_dtype} needs {want}"
                ]
        elif suf not in (".tif", ".tiff", ".npz"):  # .npz: read (and checked) by meshing.shape
            return [f"{key}: {f}: unknown CT format {suf!r} (use .npy, .npz, .tif/.tiff or .raw)"]
    except (OSError, ValueError) as exc:
        return [f"{key}: {f}: cannot read: {exc}"]
    return []
