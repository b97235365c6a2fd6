"""Policy: the verification policy file, its schema and its compiled rules."""

from weightguard.policy.load import LoadedPolicy, load_builtin, load_policy, parse_policy
from weightguard.policy.schema import Policy

__all__ = ["LoadedPolicy", "Policy", "load_builtin", "load_policy", "parse_policy"]
