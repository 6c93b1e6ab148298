#!/bin/bash
# .ci/oracle.sh - make the real-Linux oracle ready and give the path of its runner.
#
#   export NVDIMM_LINUX_ORACLE="$(.ci/oracle.sh)"    # call: prints the path on stdout
#   . .ci/oracle.sh                                   # source: exports NVDIMM_LINUX_ORACLE
#   .ci/oracle.sh --check                             # also boot the guest once
#
# Runs ../shared/tools/linux-oracle/setup.sh (Debian 12's 6.1 kernel, ndctl, QEMU: needs
# root, Debian's archive) quietly, logging to $NVDIMM_ORACLE_LOG. Idempotent: when a
# previous run with the same oracle scripts left a complete oracle behind, it does nothing
# (set NVDIMM_ORACLE_FORCE=1 to rebuild anyway).
#
# Environment:
#   NVDIMM_ORACLE_SRC   the oracle's scripts (default: <repo>/../shared/tools/linux-oracle)
#   NVDIMM_ORACLE_HOME  where setup.sh builds (default ~/.cache/nvdimm-linux-oracle);
#                       run_guest.sh reads it too, so keep it exported for the tests
#   NVDIMM_ORACLE_LOG   setup log (default $NVDIMM_ORACLE_HOME/setup.log)
#
# Exit status: 0 ready; 1 setup failed (the log's tail is shown); 3 no oracle scripts.

_nvdimm_oracle_home() {
  printf '%s\n' "${NVDIMM_ORACLE_HOME:-$HOME/.cache/nvdimm-linux-oracle}"
}

_nvdimm_oracle_main() (
  # a subshell: `set` options and variables never leak into a shell that sources us
  set -uo pipefail
  local_check=0
  for arg in "$@"; do
    case $arg in
      --check) local_check=1 ;;
      -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
      *) echo "oracle.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
  done
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  src=${NVDIMM_ORACLE_SRC:-$here/../../shared/tools/linux-oracle}
  if [ ! -x "$src/setup.sh" ] || [ ! -x "$src/run_guest.sh" ]; then
    echo "oracle.sh: no linux-oracle at $src (expected setup.sh and run_guest.sh);" \
      "real-Linux tests cannot run" >&2
    exit 3
  fi
  src=$(cd "$src" && pwd)
  home=$(_nvdimm_oracle_home)
  export NVDIMM_ORACLE_HOME=$home
  mkdir -p "$home" || { echo "oracle.sh: cannot create $home" >&2; exit 1; }
  log=${NVDIMM_ORACLE_LOG:-$home/setup.log}
  stampfile=$home/.nvdimm-model-oracle.stamp
  stamp=$(cat "$src/setup.sh" "$src/build_initramfs.sh" "$src/init" 2>/dev/null | sha256sum)
  stamp="${stamp%% *} ${KPKG:-default-kernel}"

  ready() {
    command -v qemu-system-x86_64 >/dev/null && command -v ndctl >/dev/null &&
      [ -s "$home/initrd.cpio.gz" ] && { [ -s "$home/vmlinux" ] || [ -s "$home/vmlinuz" ]; } &&
      [ -f "$stampfile" ] && [ "$(cat "$stampfile")" = "$stamp" ]
  }

  if [ "${NVDIMM_ORACLE_FORCE:-0}" != 1 ] && ready; then
    echo "oracle.sh: oracle already set up in $home" >&2
  else
    echo "oracle.sh: setting up the oracle in $home (log: $log)" >&2
    start=$(date +%s)
    : > "$log" || { echo "oracle.sh: cannot write $log" >&2; exit 1; }
    # Packages setup.sh uses. It installs them itself only when qemu or ndctl is missing,
    # and with Recommends (GUI libraries: ~500 MB); install what is missing here first,
    # without Recommends. python3 is not installed by setup.sh but it runs it.
    pkgs="qemu-system-x86 ndctl daxctl busybox-static cpio xz-utils kmod bc python3"
    missing=""
    for p in $pkgs; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
    done
    if [ -n "$missing" ]; then
      if [ "$(id -u)" != 0 ]; then
        echo "oracle.sh: needs root to install:$missing (apt-get, Debian's archive)" >&2
        exit 1
      fi
      echo "oracle.sh: apt-get install$missing" >&2
      if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
             DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
               $missing; } >>"$log" 2>&1; then
        echo "oracle.sh: apt-get install failed; last lines of $log:" >&2
        tail -20 "$log" >&2
        exit 1
      fi
    fi
    if ! "$src/setup.sh" >>"$log" 2>&1; then
      echo "oracle.sh: $src/setup.sh failed; last lines of $log:" >&2
      tail -30 "$log" >&2
      exit 1
    fi
    printf '%s\n' "$stamp" > "$stampfile"
    if ! ready; then
      echo "oracle.sh: setup.sh succeeded but left no kernel/initrd in $home; see $log" >&2
      exit 1
    fi
    echo "oracle.sh: oracle ready in $(( $(date +%s) - start ))s" >&2
  fi

  if [ $local_check = 1 ]; then
    tmp=$(mktemp -d -t nvdimm-oracle-check.XXXXXX)
    out=$("$src/run_guest.sh" -s 256M "$tmp/check.img" 'ndctl list -D' 2>&1)
    rc=$?
    rm -rf "$tmp"
    if [ $rc != 0 ] || ! grep -q '"dev":"nmem0"' <<<"$out"; then
      echo "oracle.sh: the guest did not list nmem0 (rc=$rc):" >&2
      printf '%s\n' "$out" | tail -30 >&2
      exit 1
    fi
    echo "oracle.sh: guest boots and lists nmem0" >&2
  fi
  printf '%s\n' "$src/run_guest.sh"
)

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # sourced: export the variables the tests and run_guest.sh need
  if _nvdimm_oracle_path=$(_nvdimm_oracle_main "$@"); then
    export NVDIMM_LINUX_ORACLE=$_nvdimm_oracle_path
    NVDIMM_ORACLE_HOME=$(_nvdimm_oracle_home)
    export NVDIMM_ORACLE_HOME
    unset _nvdimm_oracle_path
  else
    _nvdimm_oracle_rc=$?
    unset _nvdimm_oracle_path
    return $_nvdimm_oracle_rc
  fi
else
  _nvdimm_oracle_main "$@"
  exit $?
fi
