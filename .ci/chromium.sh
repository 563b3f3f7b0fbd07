#!/usr/bin/env bash
# Install (Debian package) a headless Chromium for the browser tests of the HTML report; idempotent.
# Prints the browser's path on its last line.
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Chromium from Debian packages..." >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
command -v chromium
