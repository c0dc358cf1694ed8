#!/usr/bin/env bash
# The Debian package, end to end: tools/package builds it; its control data names only runtime
# libraries; lintian finds no error; the units pass systemd-analyze verify; and, as root, dpkg -i
# installs it (the devmesh user in systemd-journal, its state directory), every shipped
# configuration passes --dry-run as the devmesh user with its unit's environment, an upgrade
# (a second dpkg -i) keeps an edited conffile, dpkg -r removes everything but the conffiles and
# the state, and dpkg -P those too.
# Usage: package_test.sh SOURCE_DIR WORK_DIR (ctest: label "package").
set -euo pipefail

src=$1
work=$2
mkdir -p "$work"
fail=0
check() {  # check "what" command...: runs the command, reports, remembers a failure
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
  else
    echo "FAILED: $what" >&2
    fail=1
  fi
}

deb=$(PACKAGE_BUILD_DIR="$work/build" "$src/tools/package" | tail -n 1)
echo "package: $deb"
[[ "$(basename "$deb")" =~ ^devmesh_[0-9.]+_amd64\.deb$ ]] || {
  echo "FAILED: the package is named $(basename "$deb"), not devmesh_VERSION_amd64.deb" >&2
  exit 1
}

# ---- control data: dependencies from the linked libraries only ----------------------------
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
check "the package depends on the libraries it links (libuv1, libsystemd0, libmariadb3)" \
  bash -c "grep -q 'libuv1' <<<'$depends' && grep -q 'libsystemd0' <<<'$depends' &&
           grep -q 'libmariadb3' <<<'$depends'"
check "the package depends on no build tool or -dev package" \
  bash -c "! grep -Eq '(-dev|cmake|gcc|g\+\+|clang|build-essential|pkg-config)([ ,(]|$)' <<<'$depends'"
check "the conffiles are the shipped configurations and the variables files" \
  bash -c "dpkg-deb --ctrl-tarfile '$deb' | tar -xO ./conffiles | sort | tr '\n' ' ' |
           grep -qx '/etc/default/devmesh-aggregator /etc/default/devmesh-sidecar /etc/default/devmesh-standalone /etc/devmesh/aggregator.yaml /etc/devmesh/sidecar.yaml /etc/devmesh/standalone.yaml '"

# ---- lintian: no error (warnings are listed) -----------------------------------------------
# Its exit status fails on errors only (--fail-on error, the default); warnings are listed.
lintian_out=$(lintian --fail-on error "$deb" 2>&1) && lintian_rc=0 || lintian_rc=$?
[ -n "$lintian_out" ] && echo "$lintian_out"
check "lintian reports no error" bash -c "[ $lintian_rc -eq 0 ] && ! grep -q '^E:' <<<'$lintian_out'"

# ---- systemd-analyze verify, on the package's files (no systemd running, no install) -------
units="devmesh.service devmesh-sidecar.service devmesh-aggregator.service"
tree="$work/tree"
rm -rf "$tree" "$work/units"
mkdir -p "$tree" "$work/units"
dpkg-deb -x "$deb" "$tree"
for u in $units; do
  # The binary is checked where the package would put it: the extracted tree's.
  sed "s|/usr/bin/devmesh|$tree/usr/bin/devmesh|" "$tree/usr/lib/systemd/system/$u" \
    >"$work/units/$u"
done
# verify exits 0 for an unknown key or a bad value (it ignores them, as systemd would): any
# line it prints fails the test too.
verify() {  # verify DIR UNIT...
  local dir=$1 out
  shift
  out=$(cd "$dir" && systemd-analyze verify --man=no "$@" 2>&1) || {
    echo "$out"
    return 1
  }
  [ -z "$out" ] || {
    echo "$out"
    return 1
  }
}
check "systemd-analyze verify passes for the three units, saying nothing" \
  verify "$work/units" $units
for u in $units; do
  for key in Type=notify NotifyAccess=main User=devmesh Group=devmesh WatchdogSec= \
    'ExecReload=/bin/kill -HUP $MAINPID' NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
    PrivateTmp=yes StateDirectory=devmesh/ 'EnvironmentFile=-/etc/default/devmesh-'; do
    check "$u has $key" grep -qF -- "$key" "$tree/usr/lib/systemd/system/$u"
  done
  check "$u makes no other path writable than its state directory" \
    bash -c "! grep -Eq '^(ReadWritePaths|LogsDirectory|CacheDirectory|RuntimeDirectory)=' \
             '$tree/usr/lib/systemd/system/$u'"
done

# ---- install, dry runs, upgrade, remove, purge: as root only --------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: dpkg -i / -r / -P need root (CI runs as root); the checks above ran"
  exit $fail
fi
if dpkg-query -W -f='${Status}' devmesh 2>/dev/null | grep -q 'ok installed' &&
  [ "${CI:-}" != true ]; then
  echo "SKIPPED: devmesh is already installed on this machine; not replacing it (CI=true does)"
  exit $fail
fi
# Whatever happens below, the machine is left without the package (the devmesh user stays, as
# after any purge).
trap 'dpkg -P devmesh >/dev/null 2>&1 || true' EXIT
export DEBIAN_FRONTEND=noninteractive
check "dpkg -i installs the package" dpkg -i "$deb"
check "/usr/bin/devmesh is installed" test -x /usr/bin/devmesh
check "the plugins are in /usr/lib/devmesh/plugins" test -f /usr/lib/devmesh/plugins/journald.so
check "the binary names no path of the build tree (its default plugin dir is the installed one)" \
  bash -c "! grep -qF '$work' /usr/bin/devmesh && grep -qF /usr/lib/devmesh/plugins /usr/bin/devmesh"
check "the SDK is installed (header, CMake package, pkg-config)" bash -c \
  "test -f /usr/include/devmesh/plugin.h && ls /usr/lib/*/cmake/devmesh/devmeshConfig.cmake &&
   PKG_CONFIG_PATH= pkg-config --variable=plugindir devmesh | grep -qx /usr/lib/devmesh/plugins" \
  >/dev/null
check "the devmesh system user exists" getent passwd devmesh >/dev/null
check "devmesh is in the systemd-journal group" bash -c "id -nG devmesh | grep -qw systemd-journal"
check "/var/lib/devmesh belongs to devmesh" \
  bash -c "[ \"\$(stat -c %U:%G /var/lib/devmesh)\" = devmesh:devmesh ]"
check "the variables files are root-only" \
  bash -c "[ \"\$(stat -c %a /etc/default/devmesh-sidecar)\" = 600 ]"
for u in $units; do
  check "systemd-analyze verify passes for the installed $u, saying nothing" \
    verify /usr/lib/systemd/system "$u"
done

for role in standalone sidecar aggregator; do
  # The unit's environment: its state directory, then its variables file (read by root, as
  # systemd does), run as the devmesh user.
  state=/var/lib/devmesh/$role
  out=$(
    set -a
    . "/etc/default/devmesh-$role"
    set +a
    cd /
    runuser -u devmesh -- env DEVMESH_STATE_DIR="$state" \
      ${DEVMESH_HTTP_LISTEN:+DEVMESH_HTTP_LISTEN=$DEVMESH_HTTP_LISTEN} \
      /usr/bin/devmesh --dry-run -c "/etc/devmesh/$role.yaml" 2>&1
  ) && rc=0 || rc=$?
  echo "$out" | sed "s/^/  [$role] /"
  check "devmesh --dry-run -c /etc/devmesh/$role.yaml passes as the devmesh user" \
    bash -c "[ $rc -eq 0 ] && grep -q 'configuration OK' <<<'$out'"
done

# An upgrade (the same version again: postinst configure with the old version) keeps an edited
# conffile.
echo "# edited on this node" >>/etc/devmesh/sidecar.yaml
check "a second dpkg -i (an upgrade) succeeds" dpkg -i --force-confold "$deb"
check "the upgrade kept the edited sidecar.yaml" grep -q "edited on this node" \
  /etc/devmesh/sidecar.yaml
mkdir -p /var/lib/devmesh/sidecar
echo backlog >/var/lib/devmesh/sidecar/state-kept

check "dpkg -r removes the package" dpkg -r devmesh
for gone in /usr/bin/devmesh /usr/lib/devmesh/plugins /usr/include/devmesh/plugin.h \
  /usr/lib/systemd/system/devmesh.service /usr/lib/systemd/system/devmesh-sidecar.service \
  /usr/lib/systemd/system/devmesh-aggregator.service /usr/share/devmesh/plugin.map; do
  check "dpkg -r removed $gone" test ! -e "$gone"
done
for kept in /etc/devmesh/standalone.yaml /etc/devmesh/sidecar.yaml /etc/devmesh/aggregator.yaml \
  /etc/default/devmesh-sidecar /etc/default/devmesh-aggregator /etc/default/devmesh-standalone \
  /var/lib/devmesh/sidecar/state-kept; do
  check "dpkg -r kept $kept" test -e "$kept"
done
check "dpkg -r kept the edit in sidecar.yaml" grep -q "edited on this node" /etc/devmesh/sidecar.yaml
check "dpkg -r leaves the package in config-files state" \
  bash -c "dpkg-query -W -f='\${Status}' devmesh | grep -q 'config-files'"

check "dpkg -P purges the package" dpkg -P devmesh
for gone in /etc/devmesh /etc/default/devmesh-sidecar /var/lib/devmesh; do
  check "dpkg -P removed $gone" test ! -e "$gone"
done
exit $fail
