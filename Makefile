# ahvfs build, test and demo. `make demo` and `make test` work on a fresh
# Debian machine: they install the Debian packages they need (as root).
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO        ?= go
BIN       := bin
PKGS      := ./...
TEST_TIMEOUT ?= 25m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test race lint bench demo deps fuzz clean

all: build

deps:
	@tools/install-deps.sh test

build:
	$(GO) build -o $(BIN)/ ./cmd/... ./tools/mkimage

# Every test, including those that need root, FUSE and tgtd. Under
# AHVFS_REQUIRE_ALL=1 (CI) a missing prerequisite fails instead of skipping.
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

race: deps
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

lint:
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

# Short fuzzing pass over every decoder (the corpus lives in testdata/fuzz).
fuzz:
	tools/fuzz-all.sh 20s

bench: build
	@tools/install-deps.sh bench
	tools/bench/run.sh

demo: deps build
	tools/demo.sh

clean:
	rm -rf $(BIN) demo
