#!/bin/sh
# Initialises the SoftHSM2 token "hsmca" once, in the shared token volume.
# PINs come from files (compose secrets), never from the command line.
set -eu
label=${HSMCA_TOKEN_LABEL:-hsmca}
if hsmca slot list | awk -v l="$label" '$3 == l { found = 1 } END { exit !found }'; then
  echo "token \"$label\" already initialised"
  exit 0
fi
hsmca slot init --label "$label" --so-pin-file "$HSMCA_SO_PIN_FILE" --pin-file "$HSMCA_PIN_FILE"
