"""Measurement: does personalization work? Holdouts, conversions, the uplift report, program KPIs.

``config`` (the policy's ``[measurement]`` table), ``holdout`` (who is held out, by a stable
hash), ``exposures`` (open triggers waiting for a conversion, kept in the profile state),
``kpi`` (program KPIs counted per event), ``report`` (the pure uplift computation) and
``read`` (reads ``cx.decisions`` / ``cx.conversions`` for ``cxstream report``).
"""
