"""Numbers read off a run's ``timeseries.csv`` (NumPy only): the damage onset and values at a
given voltage. Used by the demo caption and the benchmarks, so every figure quotes the onset the
same way."""

from __future__ import annotations

import numpy as np

__all__ = ["ONSET_PHI", "damage_onset", "value_at_voltage"]

#: the damage onset is the first step whose phi_max reaches this
ONSET_PHI = 0.95


def damage_onset(ts: dict, threshold: float = ONSET_PHI, columns=("voltage_V",)) -> dict:
    """The first step with ``phi_max >= threshold`` and where phi_max crosses it.

    Args:
        ts: columns of ``timeseries.csv`` (``polycrack.post.plots.read_table``).
        threshold: the phase-field value of "damaged".
        columns: columns to report at the onset (e.g. ``voltage_V``, ``x_avg``).

    Returns:
        ``{"step_index": k or None, "first_step_<col>": value at that step,
        "interpolated_<col>": value where phi_max crosses ``threshold``, linear between the two
        steps that bracket it (None at the first row)}``; every value None without an onset.
    """
    hit = np.flatnonzero(np.asarray(ts["phi_max"]) >= threshold)
    out: dict = {"step_index": int(hit[0]) if hit.size else None}
    for col in columns:
        out[f"first_step_{col}"] = out[f"interpolated_{col}"] = None
    if not hit.size:
        return out
    k = int(hit[0])
    p0 = ts["phi_max"][k - 1] if k > 0 else None
    for col in columns:
        out[f"first_step_{col}"] = float(ts[col][k])
        if k > 0:
            f = (threshold - p0) / (ts["phi_max"][k] - p0)
            out[f"interpolated_{col}"] = float(ts[col][k - 1] + f * (ts[col][k] - ts[col][k - 1]))
    return out


def value_at_voltage(ts: dict, col: str, voltage: float, rows=None) -> float | None:
    """``col`` where the cell voltage crosses ``voltage`` (linear between rows).

    Args:
        ts: columns of ``timeseries.csv``.
        col: the column to read.
        voltage: V.
        rows: boolean mask of the rows to use, in which the voltage must rise (e.g. the CC
            charge: ``ts["protocol_step"] == 0``); default all rows.

    Returns:
        The interpolated value, or None when those rows never reach ``voltage`` (to 0.1 mV).
    """
    sel = np.ones(len(ts[col]), bool) if rows is None else np.asarray(rows)
    vv, yy = np.asarray(ts["voltage_V"])[sel], np.asarray(ts[col])[sel]
    if not vv.size or vv[-1] < voltage - 1e-4:
        return None
    return float(np.interp(voltage, vv, yy))
