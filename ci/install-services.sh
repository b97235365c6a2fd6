#!/bin/sh
# The OCI registry tests (tests/sources/test_oci_registry.py) run Debian's docker-registry (the CNCF
# distribution registry) on 127.0.0.1, with a bcrypt htpasswd file made by htpasswd (apache2-utils).
# Installs them when missing and this is a Debian-like machine run as root; otherwise says why, and
# those tests skip with that reason. Never fails the caller: nothing else needs a registry.
if [ -x /usr/bin/docker-registry ] && command -v htpasswd >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then echo "install-services: no apt-get; the OCI registry tests will skip" >&2; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "install-services: not root; the OCI registry tests will skip" >&2; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
{ apt-get install -y -qq --no-install-recommends docker-registry apache2-utils ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-registry apache2-utils; }; } >/dev/null 2>&1 ||
  echo "install-services: apt-get could not install docker-registry/apache2-utils; the OCI registry tests will skip" >&2
# The package enables a system service; the tests start their own registry on a free port.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
exit 0
