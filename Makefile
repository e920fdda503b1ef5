# The safety checker as a Go library. Two commands on a fresh machine (see README):
#   make demo   check the sample images with the small model the repo ships
#   make test   provision libtorch, build gotch against it, run every test
SHELL := /bin/bash
GO ?= go
PYTHON ?= python3
PARITY ?= ../shared/parity
OUT ?= out
# go test's own timeout for the whole run; CI allows far more than the suite needs.
TEST_TIMEOUT ?= 30m
# make fuzz: wall-clock budget per target. make test: an execution-count budget, which has no deadline and
# so cannot meet Go 1.26's fuzz-coordinator deadline race (golang/go#75804) on a loaded machine.
FUZZTIME ?= 10s
TEST_FUZZTIME ?= 3000x

.PHONY: setup test test-libtorch vet fmt demo parity golden reference fullsize test-full bench bench-serving serve fuzz clean

# setup: libtorch (the 2.1.0 wheel, TORCH_VERSION=… for another, or LIBTORCH=DIR) and the configured gotch in
# the per-user cache ($$SAFETY_CACHE_DIR, default ~/.cache/sdsafety), and go.work pointing at it: the same
# command applications run (cmd/safety-setup). Idempotent: a second run takes seconds.
# (Built with GOWORK=off so that a stale go.work cannot stop it; run without, so it edits this go.work.)
setup:
	@GOWORK=off $(GO) build -o .deps/bin/safety-setup ./cmd/safety-setup
	@.deps/bin/safety-setup $(SETUP_FLAGS)

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: setup
	$(GO) vet ./...

# test: go test -json through internal/testreport, which prints what a plain go test prints (the "ok"/"FAIL"
# package lines, failing tests' output) and collects the skipped tests with their reasons; the list is printed
# at the very end (or at once when a test failed).
test: setup fmt vet
	@mkdir -p $(OUT)
	set -o pipefail; $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -json ./... | $(GO) run ./internal/testreport -skips $(OUT)/test-skips.txt
	# the concurrent parts under the race detector: dynamic batching and the HTTP service
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run 'TestBatch' .
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./cmd/safetyd
	FUZZTIME=$(TEST_FUZZTIME) ./scripts/fuzz.sh
	@cat $(OUT)/test-skips.txt

# test-libtorch: the whole suite against another libtorch (ALT_TORCH, default the newest PyTorch on PyPI when
# this was written), configured in the same cache next to the default one, through a go.work of its own in
# $(OUT)/libtorch-$(ALT_TORCH) (this checkout's go.work is left alone). It prints the wrappers that were stubbed.
ALT_TORCH ?= 2.15.0
test-libtorch: fmt
	@GOWORK=off $(GO) build -o .deps/bin/safety-setup ./cmd/safety-setup
	@dir=$$(.deps/bin/safety-setup -torch $(ALT_TORCH) -no-edit) && mkdir -p $(OUT)/libtorch-$(ALT_TORCH) && \
		printf 'go %s\n\nuse ../..\n\nreplace github.com/sugarme/gotch v0.9.1 => %s\n' "$$($(GO) env GOVERSION | sed s/^go//)" "$$dir" > $(OUT)/libtorch-$(ALT_TORCH)/go.work && \
		echo "test-libtorch: libtorch $(ALT_TORCH), stubbed wrappers: $$($(PYTHON) -c 'import json,sys; print(", ".join(json.load(open(sys.argv[1]))["stubbed_ops"]) or "none")' $$dir/BUILD_INFO.json)"
	set -o pipefail; TORCH_VERSION=$(ALT_TORCH) GOWORK=$(CURDIR)/$(OUT)/libtorch-$(ALT_TORCH)/go.work \
		$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -json ./... | $(GO) run ./internal/testreport -skips $(OUT)/test-skips-$(ALT_TORCH).txt
	@cat $(OUT)/test-skips-$(ALT_TORCH).txt

# fuzz: every fuzz target for $(FUZZTIME) each (make test runs each for $(TEST_FUZZTIME) executions;
# FUZZTIME=5m for a real run).
fuzz: setup
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

demo: setup
	$(GO) run ./examples/safetycheck -model testdata/golden/models/tiny_quickgelu testdata/golden/images

parity: setup
	@mkdir -p $(OUT)/parity-pixels
	$(GO) run ./examples/safetycheck -model $(PARITY)/model -json -pixels $(OUT)/parity-pixels $(PARITY)/images > $(OUT)/parity.jsonl
	$(PYTHON) $(PARITY)/compare.py $(PARITY) $(OUT)/parity.jsonl $(OUT)/parity-pixels

# golden: the reference environment (PyTorch, transformers, diffusers; several GB, once) and the golden files.
reference:
	./scripts/setup-reference.sh

golden: reference
	.venv/bin/python reference/make_golden.py
	.venv/bin/python reference/make_test_vectors.py

# fullsize: a random-weight checkpoint with the real ViT-L/14 shapes and the reference's answers
# (1.2 GB, git-ignored) for TestFullSizeViTL14 and the benchmarks.
fullsize: reference
	.venv/bin/python reference/fullsize.py bench-cache/fullsize

test-full: setup fullsize
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run 'TestFullSize' -v .

# bench: Go vs the Python reference on the full-size ViT-L/14 checkpoint (CPU); see scripts/bench.sh and
# docs/performance.md. Creates bench-cache/fullsize (reference/fullsize.py) and bench-cache/images once.
bench: setup reference
	./scripts/bench.sh

# bench-serving: dynamic batching in-process and safetyd over loopback (docs/performance.md, "Serving");
# the full-size checkpoint when bench-cache/fullsize exists, else the tiny parity model.
bench-serving: setup
	./scripts/bench-serving.sh

# serve: safetyd on the parity model at 127.0.0.1:8080 (curl --data-binary @IMAGE localhost:8080/v1/check)
serve: setup
	$(GO) run ./cmd/safetyd -model $(PARITY)/model

clean:
	rm -rf $(OUT)
