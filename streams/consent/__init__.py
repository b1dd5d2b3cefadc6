"""Consent and governance: the policy, consent state, and the decision step."""
