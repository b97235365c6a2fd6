"""The real-registry fixtures of test_oci_registry, shared with the other OCI test modules."""

from test_oci_registry import htpasswd_registry, token_registry  # noqa: F401 - pytest finds fixtures by name
