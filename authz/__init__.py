"""Contract access: the policy, the ASPIRE replica and the decisions, without any web framework."""
