#!/usr/bin/env bash
# Install Debian/Ubuntu packages the set-up needs, when they are missing.
# As root it uses apt-get directly, otherwise sudo if it can run without a password;
# failing both it says exactly what to install by hand.
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
if [ "$(id -u)" = 0 ]; then run=(); elif sudo -n true 2>/dev/null; then run=(sudo -n); else
  echo "missing system packages: $*; install them with: sudo apt-get install -y $*" >&2; exit 2
fi
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
  || { "${run[@]}" apt-get update >/dev/null && "${run[@]}" apt-get install -y --no-install-recommends "$@" >/dev/null; }
echo "installed: $*"
