#!/usr/bin/env bash
# Prepares a development environment under DATA_DIR (default .data): a
# SoftHSM2 token directory of its own, random SO and user PINs in 0600
# files, the token "hsmca", and a dev API token for tenant "dev".
# Safe to run again: existing pieces are kept.
set -euo pipefail

data=${HSMCA_DATA_DIR:-.data}
bin=${BIN:-bin}
mkdir -p "$data/softhsm/tokens"
chmod 700 "$data" "$data/softhsm"
data=$(cd "$data" && pwd)
conf="$data/softhsm/softhsm2.conf"
if [ ! -f "$conf" ]; then
  sed "s|{{TOKENDIR}}|$data/softhsm/tokens|" softhsm/softhsm2.conf.tmpl > "$conf"
fi
export SOFTHSM2_CONF="$conf"

umask 077
newpin() { od -An -N8 -tu8 /dev/urandom | tr -d ' \n' | cut -c1-12; }
[ -s "$data/so.pin" ] || newpin > "$data/so.pin"
[ -s "$data/user.pin" ] || newpin > "$data/user.pin"

if ! "$bin/hsmca" slot list | awk 'NR>1 {print $3}' | grep -qx hsmca; then
  "$bin/hsmca" slot init --label hsmca --so-pin-file "$data/so.pin" --pin-file "$data/user.pin"
fi

export HSMCA_DATA_DIR="$data" HSMCA_PIN_FILE="$data/user.pin" HSMCA_TOKEN_LABEL=hsmca
if [ ! -s "$data/dev-api-token" ]; then
  "$bin/hsmca" token create --tenant dev --role admin --role auditor > "$data/dev-api-token"
fi
