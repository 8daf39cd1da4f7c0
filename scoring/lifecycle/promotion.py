"""The promotion gate: a pure decision, so the rule is tested apart from training."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scoring.lifecycle.estimators import PRIMARY


@dataclass(frozen=True)
class Decision:
    """Whether a new model is promoted, and why, in words a person reads."""

    promote: bool
    reason: str
    waits: bool = False  # not promoted, but kept as a challenger for a person to promote


def decide(
    rule: str,
    tolerance: float,
    task: str,
    new: dict[str, float],
    champion: dict[str, float] | None,
    *,
    schema_change: str | None = None,
) -> Decision:
    """Apply ``always`` / ``not_worse`` / ``never`` to metrics measured on one hold-out.

    A challenger whose input schema differs from the champion's (``schema_change`` says how) is
    never promoted by a rule: clients would have to change what they send, so a person decides.
    """
    metric, bigger_better = PRIMARY[task]
    if rule == "never":
        return Decision(False, "promotion rule is 'never': kept as a challenger", waits=True)
    if schema_change:
        return Decision(
            False,
            f"input schema differs from the champion's: {schema_change}; kept as a challenger"
            " for a person to promote (dropscore models promote VERSION)",
            waits=True,
        )
    if champion is None:
        return Decision(True, "no champion yet")
    if rule == "always":
        return Decision(True, "promotion rule is 'always'")
    ours, theirs = new.get(metric, math.nan), champion.get(metric, math.nan)
    if math.isnan(ours):
        return Decision(False, f"new model's {metric} could not be measured")
    if math.isnan(theirs):
        return Decision(True, f"champion's {metric} could not be measured on this hold-out")
    margin = (ours - theirs) if bigger_better else (theirs - ours)
    if margin >= -tolerance:
        return Decision(
            True, f"{metric} {ours:.4f} vs champion {theirs:.4f}: not worse (tolerance {tolerance})"
        )
    return Decision(
        False,
        f"{metric} {ours:.4f} vs champion {theirs:.4f}: worse by {-margin:.4f}"
        f" (tolerance {tolerance})",
    )
