"""The phase-field resolution rule (h/l, docs/convergence.md): what ``check`` and ``run`` report
and when they warn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from polycrack.config import load_case
from polycrack.workflow.summary import (
    H_OVER_L_MAX,
    case_warnings,
    resolution,
    resolution_line,
    resolution_warning,
)

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo.yaml"


def test_resolution_of_the_demo_and_its_refinements():
    """h = particle_size_um / 2^refine_levels against min(l, l_gamma) (µm)."""
    res = resolution(load_case(DEMO))  # the demo follows the rule: l = 2h = 1.6 µm
    assert res == {
        "h_nominal_um": 0.8,
        "l_um": pytest.approx(1.6),
        "h_over_l": pytest.approx(0.5),
        "h_over_l_max": H_OVER_L_MAX,
        "crack_area_excess_estimate": pytest.approx(0.25),
    }
    assert "Γ is expected about 25 % above its h -> 0 limit" in resolution_line(load_case(DEMO))
    assert resolution_warning(load_case(DEMO)) is None
    fine = resolution(load_case(DEMO, ["geometry.mesh.refine_levels=2"]))
    assert fine["h_nominal_um"] == 0.2 and fine["h_over_l"] == pytest.approx(0.125)
    narrow = resolution(load_case(DEMO, ["fracture.l_gamma_m=0.4e-6"]))
    assert narrow["l_um"] == pytest.approx(0.4) and narrow["h_over_l"] == pytest.approx(2.0)
    assert resolution(load_case(DEMO, ["physics.fracture=false"])) is None


def test_warning_above_the_rule_only():
    """No warning at the rule; above it the message names h, l, h/l and the keys to change."""
    h_ok = 1.6 * H_OVER_L_MAX
    assert resolution_warning(load_case(DEMO, [f"geometry.mesh.particle_size_um={h_ok}"])) is None
    coarse = load_case(DEMO, [f"geometry.mesh.particle_size_um={1.5 * h_ok:g}"])
    msg = resolution_warning(coarse)
    assert msg is not None
    for part in (f"h = {1.5 * h_ok:g} µm", "l = 1.6 µm", "geometry.mesh.particle_size_um <="):
        assert part in msg, (part, msg)
    assert msg in case_warnings(coarse)
    assert resolution_warning(load_case(DEMO, ["physics.fracture=false"])) is None


def test_adaptive_refinement_to_the_rule_needs_no_warning():
    """A coarse base mesh with ``geometry.mesh.adapt`` refining to the rule: no warning, and the
    check line names the adaptive target; an adaptive target above the rule is warned about."""
    coarse = [f"geometry.mesh.particle_size_um={2.4 * H_OVER_L_MAX:g}"]
    adapt = load_case(DEMO, [*coarse, "geometry.mesh.adapt.h_over_l=0.5"])
    assert resolution_warning(adapt) is None
    assert "adaptive: marked cells refined to h/min(l, l_gamma) = 0.5" in resolution_line(adapt)
    loose = load_case(DEMO, [*coarse, "geometry.mesh.adapt.h_over_l=0.75"])
    assert "geometry.mesh.adapt.h_over_l = 0.75" in resolution_warning(loose)


def test_check_prints_the_resolution_and_warns_on_stderr():
    """``polycrack check`` prints h/l on stdout and the warning on stderr; the exit code stays 0."""
    cmd = [sys.executable, "-m", "polycrack", "check", str(DEMO)]
    ok = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert "phase-field resolution: h = 0.8 µm" in ok.stdout and "h/l = 0.5 " in ok.stdout
    assert "does not resolve" not in ok.stderr
    bad = subprocess.run(
        [*cmd, "--set", f"geometry.mesh.particle_size_um={2 * H_OVER_L_MAX * 1.6:g}"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 0, bad.stderr
    assert "warning: the particle mesh" in bad.stderr and "does not resolve" in bad.stderr
