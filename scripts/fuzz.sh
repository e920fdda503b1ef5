#!/usr/bin/env bash
# Runs every fuzz target of the module, each for $FUZZTIME (default 15s), one target per `go test`
# invocation (go test -fuzz accepts one target at a time). Exits non-zero if a target fails, if a
# required target is missing, or if a package does not build.
#
#   scripts/fuzz.sh                      # every target, 15s each
#   FUZZTIME=2m scripts/fuzz.sh          # longer
#   FUZZTIME=3000x scripts/fuzz.sh       # an execution-count budget (what `make test` uses)
#   scripts/fuzz.sh FuzzPickle FuzzConfig   # only these targets
#
# Environment: FUZZTIME (a -fuzztime value: 15s, 1m, 10000x), GO (default go), FUZZ_PARALLEL (the
# -parallel worker count; default GOMAXPROCS). A failing input is saved by go test under the
# package's testdata/fuzz/<Target>/ and reproduces with: go test -run '^Target$/^name$' ./pkg/
#
# Go 1.26's fuzz coordinator can end a wall-clock run (-fuzztime 10s) with a bare "context deadline
# exceeded" when the deadline passes while a worker is busy (golang/go#75804, fixed in Go 1.27); the
# machine being loaded makes it likely. That is not a finding: no input failed and none is written. So
# a run that fails with that message and writes no reproducer is reported as the known race and does not
# fail the script; any failure that writes a reproducer, or that says anything else, does. An
# execution-count budget (-fuzztime Nx) has no deadline and so never meets the race: `make test` uses one.
set -uo pipefail

cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-15s}
GO=${GO:-go}

# The parsers that read untrusted bytes must keep a fuzz target: package and target name.
required=(
	"internal/checkpoint FuzzSafetensorsHeader" # safetensors header parser
	"internal/checkpoint FuzzTorchZip"          # pytorch_model.bin reader (zip + pickle)
	"internal/checkpoint FuzzPickle"            # restricted unpickler
	"internal/clip FuzzConfig"                  # config.json parsing
	"internal/imageproc FuzzProcessorConfig"    # preprocessor_config.json parsing
	"internal/imageproc FuzzDecodePreprocess"   # image decoding + preprocessing
	"internal/imageproc FuzzReadFile"           # bounded image-file reader
	"internal/imageproc FuzzDecodeFrames"       # every frame of animated inputs (GIF block walker)
)

# Discover "package target" pairs: func FuzzX(f *testing.F) in the module's _test.go files, outside
# hidden and build directories.
mapfile -t found < <(
	find . \( -path './.*' -o -name testdata -o -name bench-cache -o -name out \) -prune -o -name '*_test.go' -print |
		xargs -r grep -H -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' |
		sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#; s#^\./[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#. \1#' |
		sort -u
)

status=0
for r in "${required[@]}"; do
	if ! printf '%s\n' "${found[@]}" | grep -qxF "$r"; then
		echo "fuzz.sh: required fuzz target missing: $r" >&2
		status=1
	fi
done

parallel=()
if [ -n "${FUZZ_PARALLEL:-}" ]; then
	parallel=(-parallel "$FUZZ_PARALLEL")
fi

failed=()
ran=0
for entry in "${found[@]}"; do
	pkg=${entry% *}
	target=${entry#* }
	if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qxF "$target"; then
		continue
	fi
	echo "=== fuzz ./$pkg $target for $FUZZTIME"
	corpus="$pkg/testdata/fuzz/$target"
	before=$(ls "$corpus" 2>/dev/null | sort)
	log=$(mktemp)
	if ! "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "${parallel[@]}" "./$pkg/" 2>&1 | tee "$log"; then
		after=$(ls "$corpus" 2>/dev/null | sort)
		if [ "$before" = "$after" ] && grep -q 'context deadline exceeded' "$log" && ! grep -q -e 'Failing input written' -e 'panic:' "$log"; then
			echo "fuzz.sh: $target: Go's fuzz-deadline race (golang/go#75804), no reproducer written: not a finding" >&2
		else
			failed+=("./$pkg $target")
		fi
	fi
	rm -f "$log"
	ran=$((ran + 1))
done

if [ $# -gt 0 ] && [ "$ran" -ne $# ]; then
	echo "fuzz.sh: ran $ran of the $# targets named ($*); known: ${found[*]}" >&2
	status=1
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: FAILED: ${failed[*]}" >&2
	status=1
fi
[ "$status" -eq 0 ] && echo "fuzz.sh: $ran targets passed ($FUZZTIME each)"
exit "$status"
