"""Case-file and parameter-set validation: every bad input exits early with a message that names the
file, the key path and (for misspelt keys) the nearest valid key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from polycrack import params
from polycrack.config import Case, load_case, load_parameters, resolve_case
from polycrack.errors import InputError

REPO = Path(__file__).resolve().parent.parent

BASE = {
    "geometry": {"particle": {"source": "sphere", "diameter_um": 14.0}, "grains": {"count": 0}},
    "material": {"set": "nmc811_parks2023"},
    "protocol": [
        {"type": "cc", "c_rate": 0.02, "until_voltage_V": 4.5},
        {"type": "cv", "voltage_V": 4.5, "until_c_rate": 0.01},
    ],
    "physics": {"mechanics": False, "fracture": False},
}


def _with(path: str, value):
    """BASE with one dotted key set (list indices allowed)."""
    case = copy.deepcopy(BASE)
    parts = path.split(".")
    node = case
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value
    return case


def _write(tmp_path: Path, case: dict, name: str = "case.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(case))
    return p


def test_base_case_is_valid(tmp_path):
    rc = load_case(_write(tmp_path, BASE))
    assert rc.params.electrochemistry.c_max_mol_m3 == 63104.0
    assert rc.params.fracture.split == "hybrid"
    assert rc.case.protocol[0].c_rate == 0.02


def test_shipped_parameter_set_has_units_and_sources():
    raw = yaml.safe_load((params.PARAMS_DIR / "nmc811_parks2023.yaml").read_text())
    for section in ("electrochemistry", "mechanics", "fracture"):
        for key, entry in raw[section].items():
            assert isinstance(entry, dict) and set(entry) == {"value", "source"}, key
            assert entry["source"].strip(), f"{section}.{key} has no source"
    p, sources = load_parameters(params.PARAMS_DIR / "nmc811_parks2023.yaml")
    assert sources["electrochemistry.D_m2_s"].startswith("[F] Chen")
    # docs/model.md section 4 baseline values
    assert (p.mechanics.E_particle_Pa, p.mechanics.nu_particle) == (150e9, 0.3)
    assert (p.mechanics.E_binder_Pa, p.mechanics.nu_binder) == (0.3e9, 0.3)
    assert (p.electrochemistry.x0, p.electrochemistry.D_m2_s) == (0.9084, 4e-15)
    # calibrated on the reduced Parks 2023 case (benchmarks/parks2023/REPORT.md section 2), scaled
    # to the baseline l = 0.2 µm by Gc ~ l
    assert (p.fracture.Gc_bulk_J_m2, p.fracture.Gc_GB_J_m2) == (20.0, 0.74)
    assert (p.fracture.l_m, p.fracture.l_gamma_m, p.fracture.k_residual) == (0.2e-6, 0.2e-6, 1e-7)


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")))
def test_examples_are_valid(example):
    if "sweep" in example.name:
        pytest.skip("sweep files have their own schema")
    load_case(example)


def test_set_overrides_parameter_and_case(tmp_path):
    rc = load_case(
        _write(tmp_path, BASE),
        ["fracture.Gc_GB_J_m2=3.5", "solver.linear=fieldsplit", "protocol.0.c_rate=0.1"],
    )
    assert rc.params.fracture.Gc_GB_J_m2 == 3.5
    assert rc.sources["fracture.Gc_GB_J_m2"] == "--set"
    assert rc.case.solver.linear == "fieldsplit"
    assert rc.case.protocol[0].c_rate == 0.1


def test_material_overrides_nested_and_dotted(tmp_path):
    case = _with("material.overrides", {"fracture": {"l_m": 0.5e-6}, "mechanics.nu_binder": 0.25})
    rc = load_case(_write(tmp_path, case))
    assert rc.params.fracture.l_m == 0.5e-6 and rc.params.mechanics.nu_binder == 0.25


# (case dict, --set list, substrings every message must contain)
BAD = {
    "misspelt parameter key": (
        _with("material.overrides", {"electrochemistry.c_max_mol_m": 1.0}),
        [],
        ["electrochemistry.c_max_mol_m", "unknown key", "did you mean 'c_max_mol_m3'?"],
    ),
    "misspelt section": (
        {**BASE, "protocl": []},
        [],
        ["protocl", "unknown key", "did you mean 'protocol'?"],
    ),
    "misspelt step key": (
        _with("protocol.0", {"type": "cc", "c_rat": 0.02, "until_voltage_V": 4.5}),
        [],
        ["protocol[0].c_rat", "did you mean 'c_rate'?"],
    ),
    "unknown step type": (
        _with("protocol.1", {"type": "cvv", "voltage_V": 4.5}),
        [],
        ["protocol[1]", "unknown step type 'cvv'", "cc, cv, rest"],
    ),
    "negative modulus": (
        BASE,
        ["mechanics.E_particle_Pa=-1e9"],
        ["E_particle_Pa", "greater than 0"],
    ),
    "poisson too large": (BASE, ["mechanics.nu_binder=0.5"], ["nu_binder", "less than 0.5"]),
    "x0 outside (0, 1)": (
        BASE,
        ["electrochemistry.x0=1.2"],
        ["electrochemistry.x0", "less than 1"],
    ),
    "voltage limit above OCP range": (
        _with("protocol.0.until_voltage_V", 5.0),
        [],
        ["protocol[0].until_voltage_V", "outside the OCP range", "3.487-4.679"],
    ),
    "cv voltage below OCP range": (
        _with("protocol.1.voltage_V", 3.0),
        [],
        ["protocol[1].voltage_V", "outside the OCP range"],
    ),
    "zero C-rate": (_with("protocol.0.c_rate", 0), [], ["protocol[0].c_rate", "greater than 0"]),
    "wrong type": (
        _with("geometry.grains.count", "many"),
        [],
        ["geometry.grains.count", "valid integer", "'many'"],
    ),
    "binder inside particle": (
        _with("geometry.binder_outer_diameter_um", 12.0),
        [],
        ["geometry", "binder_outer_diameter_um (12.0) must exceed particle.diameter_um (14.0)"],
    ),
    "cv without stop": (
        _with("protocol.1", {"type": "cv", "voltage_V": 4.5}),
        [],
        ["protocol[1]", "needs 'until_c_rate' or 'max_time_s'"],
    ),
    "fracture without mechanics": (
        _with("physics", {"mechanics": False, "fracture": True}),
        [],
        ["physics", "fracture: true needs mechanics: true"],
    ),
    "misspelt physics mode": (
        _with("physics", {"mode": "quasi-static"}),
        [],
        ["physics.mode", "'coupled'", "'quasistatic'", "did you mean 'quasistatic'?"],
    ),
    "quasistatic without mechanics": (
        BASE,
        ["physics.mode=quasistatic", "physics.mechanics=false", "physics.fracture=false"],
        ["physics", "mode: quasistatic solves mechanics per load step and needs mechanics: true"],
    ),
    "unknown parameter set": (
        _with("material.set", "nmc811_parks2032"),
        [],
        ["material.set", "no parameter set 'nmc811_parks2032'", "did you mean 'nmc811_parks2023'?"],
    ),
    "set with unknown section": (
        BASE,
        ["fractur.Gc_GB_J_m2=1"],
        ["--set fractur.Gc_GB_J_m2=1", "did you mean 'fracture'?"],
    ),
    "set misspelt parameter": (
        BASE,
        ["fracture.Gc_gb_J_m2=1"],
        ["--set", "fracture.Gc_gb_J_m2", "did you mean 'Gc_GB_J_m2'?"],
    ),
    "set without equals": (BASE, ["fracture.Gc_GB_J_m2"], ["expected key=value"]),
    "unknown split": (
        BASE,
        ["fracture.split=spectal"],
        ["fracture.split", "'none', 'voldev', 'spectral' or 'hybrid'"],
    ),
    "length scale in micrometres": (
        BASE,
        ["fracture.l_m=0.2"],
        ["fracture.l_m", "is it in metres?"],
    ),
    "dt bounds out of order": (
        _with("solver", {"dt_min_s": 10.0, "dt_initial_s": 1.0}),
        [],
        ["solver", "dt_min_s <= dt_initial_s <= dt_max_s"],
    ),
    "petsc option with dash": (
        _with("solver.petsc_options", {"-ksp_max_it": 5}),
        [],
        ["solver.petsc_options", "'-ksp_max_it'", "without the leading dash"],
    ),
    "missing protocol": (
        {k: v for k, v in BASE.items() if k != "protocol"},
        [],
        ["protocol: required key is missing"],
    ),
    "charge limit below open circuit": (
        _with("protocol.0.until_voltage_V", 3.5),
        [],
        ["protocol[0].until_voltage_V", "below the open-circuit voltage"],
    ),
    "unknown particle source": (
        _with("geometry.particle.source", "cube"),
        [],
        ["geometry.particle.source", "'sphere', 'synthetic', 'ct' or 'surface'"],
    ),
    "ct without file": (
        _with("geometry.particle", {"source": "ct", "voxel_size_um": 0.1}),
        [],
        ["geometry.particle", "needs 'file'"],
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_message(tmp_path, name):
    case, sets, expected = BAD[name]
    path = _write(tmp_path, case)
    with pytest.raises(InputError) as exc:
        load_case(path, sets)
    msg = str(exc.value)
    if not sets and "set" not in name:
        assert str(path) in msg or "material.set" in msg, msg
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("protocol: [\n")
    with pytest.raises(InputError, match="broken.yaml: not valid YAML"):
        load_case(p)
    with pytest.raises(InputError, match="nope.yaml: no such file"):
        load_case(tmp_path / "nope.yaml")


def test_parameter_file_entry_without_value(tmp_path):
    src = (params.PARAMS_DIR / "nmc811_parks2023.yaml").read_text()
    bad = src.replace("D_m2_s: {value: 4.0e-15,", "D_m2_s: {val: 4.0e-15,")
    p = tmp_path / "myset.yaml"
    p.write_text(bad)
    with pytest.raises(InputError, match=r"myset.yaml: electrochemistry.D_m2_s: expected \{value"):
        load_parameters(p)


def test_parameter_set_by_path_relative_to_case(tmp_path):
    (tmp_path / "sets").mkdir()
    src = (params.PARAMS_DIR / "nmc811_parks2023.yaml").read_text()
    (tmp_path / "sets" / "mine.yaml").write_text(
        src.replace("Gc_bulk_J_m2: {value: 20.0", "Gc_bulk_J_m2: {value: 40.0")
    )
    rc = load_case(_write(tmp_path, _with("material.set", "sets/mine.yaml")))
    assert rc.params.fracture.Gc_bulk_J_m2 == 40.0
    # the shipped relative table name falls back to params/data when not beside the copied set
    assert rc.lattice_table_path == params.DATA_DIR / "nmc811_lattice_maerker2019.tsv"


def test_missing_lattice_table_is_named(tmp_path):
    src = (params.PARAMS_DIR / "nmc811_parks2023.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(src.replace("data/nmc811_lattice", "data/nope_lattice"))
    with pytest.raises(InputError, match="mine.yaml: mechanics.lattice_table: no file"):
        load_case(_write(tmp_path, _with("material.set", "mine.yaml")))


def test_resolved_case_round_trips_to_json():
    import json

    rc = resolve_case(BASE, None)
    d = json.loads(json.dumps(rc.to_dict()))
    assert Case.model_validate(d["case"]) == rc.case
    assert d["sources"]["fracture.Gc_GB_J_m2"].startswith("[I]")


def test_preconditioner_reuse_off_unquoted(tmp_path):
    """``--set solver.preconditioner_reuse=off`` (YAML reads off as false) means ``off``;
    other values are refused naming the key."""
    case = tmp_path / "c.yaml"
    case.write_text(yaml.safe_dump(BASE))
    rc = load_case(case, ["solver.preconditioner_reuse=off"])
    assert rc.case.solver.preconditioner_reuse == "off"
    assert load_case(case, []).case.solver.preconditioner_reuse == "newton"
    with pytest.raises(InputError, match="preconditioner_reuse"):
        load_case(case, ["solver.preconditioner_reuse=always"])
