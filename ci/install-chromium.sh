#!/bin/sh
# The dashboard's browser tests drive Debian's Chromium through Playwright (no browser download).
# Installs it when it is missing and this is a Debian-like machine run as root; otherwise says why,
# and those tests skip with that reason. Never fails the caller: nothing else needs a browser.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then echo "install-chromium: no apt-get; the browser tests will skip" >&2; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "install-chromium: not root; the browser tests will skip" >&2; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
{ apt-get install -y -qq --no-install-recommends chromium ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; } >/dev/null 2>&1 ||
  echo "install-chromium: apt-get could not install chromium; the browser tests will skip" >&2
exit 0
