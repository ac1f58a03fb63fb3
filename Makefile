# hsmca: `make run` starts a dev daemon, `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BIN := bin
DATA ?= .data
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/hsmca/hsmca/internal/daemon.Version=$(VERSION)
ADDR ?= 127.0.0.1:8080

.PHONY: all build run test test-short vet fmt clean e2e-monitoring fuzz bench chaos

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# Installs SoftHSM2 if missing, makes a dev token under $(DATA), creates a
# dev API token and starts the daemon on the embedded store.
run: build
	@softhsm/ensure-packages.sh softhsm
	@HSMCA_DATA_DIR=$(DATA) BIN=$(BIN) softhsm/dev-env.sh
	@data=$$(cd $(DATA) && pwd); tok=$$(cat $$data/dev-api-token); \
	echo ""; \
	echo "hsmcad is starting on http://$(ADDR) (store: bolt in $$data; token: hsmca)"; \
	echo "dev API token for tenant 'dev' (roles admin, auditor): $$data/dev-api-token"; \
	echo ""; \
	echo "  curl -s http://$(ADDR)/readyz"; \
	echo "  curl -s -H \"Authorization: Bearer \$$(cat $$data/dev-api-token)\" http://$(ADDR)/v1/events"; \
	echo "  curl -s -H \"Authorization: Bearer \$$(cat $$data/dev-api-token)\" -H 'Content-Type: application/json' -d '{\"algorithm\":\"EC256\"}' http://$(ADDR)/v1/keys"; \
	echo ""; \
	echo "stop with Ctrl-C"; \
	SOFTHSM2_CONF=$$data/softhsm/softhsm2.conf HSMCA_DATA_DIR=$$data HSMCA_PIN_FILE=$$data/user.pin \
	HSMCA_TOKEN_LABEL=hsmca HSMCA_LISTEN_ADDR=$(ADDR) exec $(BIN)/hsmcad

# The whole suite against real SoftHSM2, redis-server and bolt.
test:
	@softhsm/ensure-packages.sh softhsm redis sentinel openssl prometheus opencryptoki p11kit tpm2 rsyslog certbot lego
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# The daemon, a real Prometheus and the files under deploy/: promtool
# checks, alert unit tests, and data behind every dashboard panel and
# alert, on a fresh daemon and after a workload. Also part of `make test`.
e2e-monitoring:
	@softhsm/ensure-packages.sh softhsm prometheus
	$(GO) test -count=1 -v -run TestMonitoringEndToEnd ./internal/monitoring/

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)

# Every fuzz target of the parsers of untrusted input (PEM, CSR, private
# keys, JSON bodies, X-APP-CERTIFICATE), each for FUZZTIME. Their seed
# corpora already run as ordinary tests in `make test`; a crasher is saved
# under the package's testdata/fuzz and then runs there too.
FUZZTIME ?= 30s
FUZZ_PKGS ?= ./signer/ ./signer/admins/ ./signer/apig/ ./signer/dts/ ./signer/keys/ ./signer/pca/ ./signer/encoding/ ./api/ ./store/internal/storekit/
# e.g. FUZZFLAGS=-parallel=1 on a shared machine (default: one worker per CPU)
FUZZFLAGS ?=
fuzz:
	@softhsm/ensure-packages.sh softhsm redis openssl
	@set -e; for pkg in $(FUZZ_PKGS); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg; \
	  done; \
	done

# Throughput and latency of issuance, signing, show and list over HTTP on
# fresh SoftHSM2 tokens, bolt then redis, beside the HSM's in-process
# limits, and again with BENCH_SEED_COUNT certificates stored; then a CRL
# of BENCH_CRL_ENTRIES revoked certificates rebuilt by revocations, shows
# meanwhile, and served. Then issuance and signing on Redis Sentinel (a
# master, two replicas, three sentinels) with writes waiting for a replica
# and without, and on a three-master Redis Cluster, with what WAIT and the
# cluster add. Prints one table (also written to $(BENCH_OUT)).
# About 15 minutes with the defaults.
BENCH_DURATION ?= 8s
BENCH_WARMUP ?= 2s
BENCH_CONCURRENCY ?= 1,8,64
BENCH_SEED_COUNT ?= 100000
BENCH_CRL_ENTRIES ?= 100000
BENCH_STORES ?= bolt,redis,sentinel,sentinel-nowait,cluster
BENCH_OUT ?= $(BIN)/bench.md
BENCH_PROFILE_DIR ?=
BENCH_OPS ?=
BENCH_ROUNDS ?= 1
bench: build
	@softhsm/ensure-packages.sh softhsm redis sentinel
	BENCH_DURATION=$(BENCH_DURATION) BENCH_WARMUP=$(BENCH_WARMUP) BENCH_CONCURRENCY=$(BENCH_CONCURRENCY) \
	BENCH_SEED_COUNT=$(BENCH_SEED_COUNT) BENCH_CRL_ENTRIES=$(BENCH_CRL_ENTRIES) BENCH_STORES=$(BENCH_STORES) BENCH_OUT=$(BENCH_OUT) \
	BENCH_PROFILE_DIR=$(BENCH_PROFILE_DIR) BENCH_OPS=$(BENCH_OPS) BENCH_ROUNDS=$(BENCH_ROUNDS) $(BIN)/hsmca bench --hsmcad $(BIN)/hsmcad

# Crash consistency: hsmcad is killed with SIGKILL at random moments under a
# mixed workload of every family, restarted on the same store and token and
# checked after each restart, CHAOS_KILLS times on bolt and on Redis. The
# same test runs in `make test` with 20 kills per backend. The HSM runs kill
# the p11-kit server in front of the token instead (CHAOS_HSM_DROPS times).
# The Sentinel row runs on a master with two replicas and three sentinels,
# kills the daemon CHAOS_SENTINEL_KILLS times and the Redis master under
# load in every other round (4 daemon kills in `make test`).
CHAOS_KILLS ?= 100
CHAOS_HSM_DROPS ?= 20
CHAOS_SENTINEL_KILLS ?= 30
chaos:
	@softhsm/ensure-packages.sh softhsm redis sentinel p11kit
	HSMCA_CHAOS_KILLS=$(CHAOS_KILLS) HSMCA_CHAOS_HSM_DROPS=$(CHAOS_HSM_DROPS) HSMCA_CHAOS_SENTINEL_KILLS=$(CHAOS_SENTINEL_KILLS) $(GO) test -count=1 -v -timeout 0 -run '^TestChaos' ./internal/chaos/
