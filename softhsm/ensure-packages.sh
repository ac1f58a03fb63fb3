#!/usr/bin/env bash
# Installs the Debian packages hsmca needs when their commands are missing.
# Usage: softhsm/ensure-packages.sh [softhsm] [redis] [sentinel] [openssl]
#        [prometheus] [opencryptoki] [p11kit] [tpm2] [rsyslog] [certbot]
#        [lego]
set -euo pipefail

need=()
for what in "$@"; do
  case "$what" in
    softhsm) command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2) ;;
    redis)   command -v redis-server  >/dev/null 2>&1 || need+=(redis-server) ;;
    sentinel) command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel) ;;
    openssl) command -v openssl       >/dev/null 2>&1 || need+=(openssl) ;;
    prometheus) { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need+=(prometheus) ;;
    # opencryptoki's software token and its daemon (tests start pkcsslotd).
    opencryptoki) { [ -x /usr/sbin/pkcsslotd ] && ls /usr/lib/*/pkcs11/libopencryptoki.so >/dev/null 2>&1; } || need+=(opencryptoki) ;;
    # p11-kit server (p11-kit) and its client module (p11-kit-modules).
    p11kit)
      command -v p11-kit >/dev/null 2>&1 || need+=(p11-kit)
      ls /usr/lib/*/pkcs11/p11-kit-client.so >/dev/null 2>&1 || need+=(p11-kit-modules) ;;
    # tpm2-pkcs11 on a software TPM: swtpm, the tpm2-abrmd resource manager
    # on a private D-Bus session bus, and the TCTIs that reach them.
    tpm2)
      ls /usr/lib/*/pkcs11/libtpm2_pkcs11.so >/dev/null 2>&1 || need+=(libtpm2-pkcs11-1)
      command -v swtpm >/dev/null 2>&1 || need+=(swtpm)
      { command -v tpm2-abrmd >/dev/null 2>&1 || [ -x /usr/sbin/tpm2-abrmd ]; } || need+=(tpm2-abrmd)
      ls /usr/lib/*/libtss2-tcti-tabrmd.so.0 >/dev/null 2>&1 || need+=(libtss2-tcti-tabrmd0)
      ls /usr/lib/*/libtss2-tcti-swtpm.so.0 >/dev/null 2>&1 || need+=(libtss2-tcti-swtpm0)
      command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon) ;;
    # rsyslogd (imtcp, omfile) and its GnuTLS netstream driver (TLS).
    rsyslog)
      { command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ]; } || need+=(rsyslog)
      ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || need+=(rsyslog-gnutls) ;;
    # ACME clients the ACME tests run against the daemon.
    certbot) command -v certbot >/dev/null 2>&1 || need+=(certbot) ;;
    lego) command -v lego >/dev/null 2>&1 || need+=(lego) ;;
    *) echo "ensure-packages: unknown component $what" >&2; exit 2 ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "ensure-packages: need root or sudo to install: ${need[*]}" >&2; exit 1
  fi
fi
echo "installing ${need[*]} (apt-get) ..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
echo "installed ${need[*]}" >&2
