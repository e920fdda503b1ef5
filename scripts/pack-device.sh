#!/usr/bin/env bash
# pack-device.sh: prepare .device/ for scripts/device-check.sh, which runs on a GPU machine that has
# Python, PyTorch, transformers and g++ but no Go and no network. Run it here, before the device call;
# the call then names `.device` in its carry list (see docs/cuda.md).
#
# .device/ (git-ignored through its own .gitignore, so it travels only when carried):
#   go.tar.xz          a trimmed Go toolchain (GOROOT without test/, doc/, api/, misc/, src/cmd/, the std
#                      library's tests and testdata, and the tools a plain `go test -vet=off` never runs)
#   gotch.tar.xz       the pristine gotch v0.9.1 module source without example/ and gen/ (the module zip is
#                      59 MB because of them). device-check.sh passes it to cmd/safety-setup as
#                      GOTCH_SRC: the configured copy must be built there, against that machine's torch.
#   gomodcache.tar     the module download cache (zips, .mod, .info) of every other module the build
#                      needs, for GOPROXY=off there
#   parity/            the independent parity fixture from ../shared/parity (../shared does not travel),
#                      without its pixel dumps (expected/*.f32: only compare.py reads them)
#   MANIFEST           what was packed, from which Go, and the sizes
# Idempotent: each piece is rebuilt only when its inputs changed (a stamp per piece).
# Prints the size of everything that would travel (tracked and untracked-not-ignored files + .device)
# and fails when it exceeds the 64 MiB limit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dev="$root/.device"
parity_src="${PARITY:-$root/../shared/parity}"
limit=$((64 * 1024 * 1024))
log() { echo "pack-device: $*"; }

mkdir -p "$dev"
printf '# made by scripts/pack-device.sh; ignore everything here (it travels through carry)\n*\n' > "$dev/.gitignore"

goroot=$(go env GOROOT)
gover=$(go env GOVERSION)
goarch=$(go env GOOS)_$(go env GOARCH)
[ "$goarch" = linux_amd64 ] || { echo "pack-device: the device is linux/amd64; this Go is $goarch" >&2; exit 1; }

# 1. the Go toolchain
stamp="$gover $goroot v3"
if [ "$(cat "$dev/go.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$dev/go.tar.xz" ]; then
  log "packing $gover from $goroot (trimmed; xz takes a minute or two)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/go/bin" "$tmp/go/pkg/tool/$goarch"
  cp -a "$goroot/VERSION" "$goroot/go.env" "$goroot/LICENSE" "$tmp/go/"
  cp -a "$goroot/bin/go" "$tmp/go/bin/"
  # The tools `go test -c` / `go build` run for a cgo package: compile, asm (runtime), cgo, link, and vet
  # (go test insists on finding it even with -vet=off).
  for t in compile asm cgo link vet buildid pack; do
    [ -e "$goroot/pkg/tool/$goarch/$t" ] && cp -a "$goroot/pkg/tool/$goarch/$t" "$tmp/go/pkg/tool/$goarch/"
  done
  cp -a "$goroot/pkg/include" "$tmp/go/pkg/"
  [ -d "$goroot/lib" ] && cp -a "$goroot/lib" "$tmp/go/"
  # The standard library's sources (std is compiled from source since Go 1.20), without cmd/ (the
  # tools are prebuilt above), tests and test data.
  (cd "$goroot" && tar -cf - --exclude='src/cmd' --exclude='testdata' --exclude='*_test.go' src) | tar -xf - -C "$tmp/go"
  XZ_OPT="-6 -T0" tar -cJf "$dev/go.tar.xz.tmp" -C "$tmp" go
  mv "$dev/go.tar.xz.tmp" "$dev/go.tar.xz"
  echo "$stamp" > "$dev/go.stamp"
  rm -rf "$tmp"
  trap - EXIT
else
  log "go.tar.xz is up to date ($gover)"
fi

# 2. gotch's source (pristine, trimmed)
gotch_dir=$(cd "$root" && GOWORK=off go mod download -json github.com/sugarme/gotch@v0.9.1 |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
stamp="$gotch_dir v1"
if [ "$(cat "$dev/gotch.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$dev/gotch.tar.xz" ]; then
  log "packing gotch v0.9.1 from $gotch_dir (without example/ and gen/)"
  tar -cJf "$dev/gotch.tar.xz.tmp" -C "$(dirname "$gotch_dir")" --exclude="$(basename "$gotch_dir")/example" \
    --exclude="$(basename "$gotch_dir")/gen" --transform "s,^$(basename "$gotch_dir"),gotch," "$(basename "$gotch_dir")"
  mv "$dev/gotch.tar.xz.tmp" "$dev/gotch.tar.xz"
  echo "$stamp" > "$dev/gotch.stamp"
else
  log "gotch.tar.xz is up to date"
fi

# 3. the other modules: what the device's build needs, fetched from this machine's module cache into a fresh
#    one (GOPROXY=file://…: nothing from the network), gotch's zip left out. The device builds in workspace
#    mode (safety-setup's go.work replaces gotch with a directory), which reads the go.mod of every
#    module in gotch's requirement graph, so the collection runs in the same mode.
stamp="$(cat "$root/go.mod" "$root/go.sum" "$gotch_dir/go.mod" | sha256sum | cut -c1-16) v2"
if [ "$(cat "$dev/gomodcache.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$dev/gomodcache.tar" ]; then
  log "collecting the build's modules (except gotch) from $(go env GOMODCACHE)"
  mc=$(mktemp -d)
  ws=$(mktemp -d)
  printf 'go %s\n\nuse %s\n\nreplace github.com/sugarme/gotch v0.9.1 => %s\n' "${gover#go}" "$root" "$gotch_dir" > "$ws/go.work"
  proxy="file://$(go env GOMODCACHE)/cache/download"
  for cmd in "list -deps -test ./..." "list -m all"; do
    # shellcheck disable=SC2086
    (cd "$root" && GOWORK="$ws/go.work" GOMODCACHE="$mc" GOFLAGS=-modcacherw GOSUMDB=off GOTOOLCHAIN=local \
      GOPROXY="$proxy" go $cmd > /dev/null)
  done
  rm -rf "$mc/cache/download/github.com/sugarme/gotch/@v/v0.9.1.zip" "$mc/cache/download/github.com/sdsafety" \
    "$mc/cache/download/sumdb"
  find "$mc/cache/download" -name '*.lock' -delete
  tar -cf "$dev/gomodcache.tar" -C "$mc" cache/download
  chmod -R u+w "$mc" && rm -rf "$mc" "$ws"
  echo "$stamp" > "$dev/gomodcache.stamp"
else
  log "gomodcache.tar is up to date"
fi

# 4. the parity fixture
if [ -d "$parity_src" ]; then
  rm -rf "$dev/parity"
  mkdir -p "$dev/parity/expected"
  cp -a "$parity_src/model" "$parity_src/images" "$dev/parity/"
  cp -a "$parity_src/expected/expected.json" "$dev/parity/expected/"
  for f in README.md compare.py; do [ -f "$parity_src/$f" ] && cp -a "$parity_src/$f" "$dev/parity/"; done
  log "parity fixture copied from $parity_src"
else
  log "WARNING: no parity fixture at $parity_src: the device check will skip the parity part"
  rm -rf "$dev/parity"
fi

# 5. what travels
tree_bytes=$(cd "$root" && git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null |
  awk '{s += $1} END {print s + 0}')
dev_bytes=$(find "$dev" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
total=$((tree_bytes + dev_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
{
  echo "packed: $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/pack-device.sh"
  echo "go: $gover from $goroot"
  (cd "$dev" && find . -type f ! -path './parity/*' -printf '%P %s\n' | sort)
  echo "parity: $(find "$dev/parity" -type f 2>/dev/null | wc -l) files"
  echo "working tree (tracked + untracked-not-ignored): $(mib "$tree_bytes")"
  echo ".device: $(mib "$dev_bytes")"
  echo "total that travels: $(mib "$total") of $(mib "$limit")"
} > "$dev/MANIFEST"
sed 's/^/pack-device: /' "$dev/MANIFEST" | grep -E 'tar|working tree|\.device|total|parity'
if [ "$total" -gt "$limit" ]; then
  echo "pack-device: $(mib "$total") would travel, more than the $(mib "$limit") limit" >&2
  exit 1
fi
