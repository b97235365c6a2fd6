#!/bin/sh
# The OCI registry tests (tests/sources/test_oci_registry.py) run Debian's docker-registry (the CNCF
# distribution registry) on 127.0.0.1, with a bcrypt htpasswd file made by htpasswd (apache2-utils).
# The replica tests (tests/postgres_support.py) start a throw-away PostgreSQL from Debian's postgresql
# package (initdb/pg_ctl under /usr/lib/postgresql/*/bin).
# Installs them when missing and this is a Debian-like machine run as root; otherwise says why, and
# those tests skip with that reason. Never fails the caller: nothing else needs these services.
need=""
if ! [ -x /usr/bin/docker-registry ] || ! command -v htpasswd >/dev/null 2>&1; then need="docker-registry apache2-utils"; fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then need="$need postgresql"; fi
if [ -z "$need" ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then echo "install-services: no apt-get; the tests needing$need will skip" >&2; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "install-services: not root; the tests needing$need will skip" >&2; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # $need is a list of package names
{ apt-get install -y -qq --no-install-recommends $need ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $need; }; } >/dev/null 2>&1 ||
  echo "install-services: apt-get could not install$need; the tests needing them will skip" >&2
# The packages enable system services; the tests start their own registry and PostgreSQL on free ports.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
  systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
exit 0
