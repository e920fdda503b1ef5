#!/usr/bin/env bash
# Runs every fuzz target of the module, each for $FUZZTIME (default 15s), one target per `go test`
# invocation (go test -fuzz accepts one target at a time). Exits non-zero if a target fails, if a
# required target is missing, or if a package does not build.
#
#   scripts/fuzz.sh                      # every target, 15s each
#   FUZZTIME=2m scripts/fuzz.sh          # longer
#   scripts/fuzz.sh FuzzPickle FuzzConfig   # only these targets
#
# Environment: FUZZTIME (a -fuzztime value: 15s, 1m, 10000x), GO (default go), FUZZ_PARALLEL (the
# -parallel worker count; default GOMAXPROCS). A failing input is saved by go test under the
# package's testdata/fuzz/<Target>/ and reproduces with: go test -run '^Target$/^name$' ./pkg/
set -uo pipefail

cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-15s}
GO=${GO:-go}

# The parsers that read untrusted bytes must keep a fuzz target: package and target name.
required=(
	"internal/checkpoint FuzzSafetensorsHeader" # safetensors header parser
	"internal/checkpoint FuzzTorchZip"          # pytorch_model.bin reader (zip + pickle)
	"internal/checkpoint FuzzPickle"            # restricted unpickler
	"internal/checkpoint FuzzConfig"            # config.json parsing
	"internal/imageproc FuzzProcessorConfig"    # preprocessor_config.json parsing
	"internal/imageproc FuzzDecodePreprocess"   # image decoding + preprocessing
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
	if ! "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "${parallel[@]}" "./$pkg/"; then
		failed+=("./$pkg $target")
	fi
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
