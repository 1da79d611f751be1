"""Linear and mixed-integer programs solved by HiGHS, quietly and deterministically.

highspy's raw binding, not scipy.optimize: the same solver, imported in a fraction of the
time (planning a fleet must stay fast), and without the banner its wrapper class prints.
Imported only when a spec packs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Solution:
    optimal: bool
    x: list[float]  # column values
    row_duals: list[float]  # d objective / d row bound
    objective: float


def solve(
    cost: Sequence[float],
    rows: Sequence[dict[int, float]],
    row_lower: Sequence[float],
    row_upper: Sequence[float],
    col_upper: Sequence[float] | None = None,
    integer: Sequence[int] = (),
) -> Solution:
    """min cost.x  s.t.  row_lower <= A x <= row_upper,  0 <= x <= col_upper; the
    columns in `integer` integral. Infinite bounds are math.inf."""
    import highspy._core as hc

    n = len(cost)
    lp = hc.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = len(rows)
    lp.col_cost_ = list(cost)
    lp.col_lower_ = [0.0] * n
    lp.col_upper_ = [_inf(v) for v in col_upper] if col_upper is not None else [hc.kHighsInf] * n
    lp.row_lower_ = [_inf(v) for v in row_lower]
    lp.row_upper_ = [_inf(v) for v in row_upper]
    start, index, value = [0], [], []
    for row in rows:
        for col in sorted(row):
            index.append(col)
            value.append(row[col])
        start.append(len(index))
    lp.a_matrix_.format_ = hc.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = len(rows)
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    if integer:
        kinds = [hc.HighsVarType.kContinuous] * n
        for col in integer:
            kinds[col] = hc.HighsVarType.kInteger
        lp.integrality_ = kinds
    highs = hc._Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("threads", 1)  # the same answer on every machine
    highs.setOptionValue("random_seed", 0)
    highs.passModel(lp)
    highs.run()
    optimal = highs.getModelStatus() == hc.HighsModelStatus.kOptimal
    solution = highs.getSolution()
    return Solution(
        optimal,
        list(solution.col_value),
        list(solution.row_dual),
        highs.getInfo().objective_function_value,
    )


def _inf(v: float) -> float:
    import highspy._core as hc

    return hc.kHighsInf if math.isinf(v) and v > 0 else (-hc.kHighsInf if math.isinf(v) else v)
