# What people type. The real build is CMake; this file only names the jobs.
#   make run    install what is missing, build, generate a story with the default model
#   make test   build (GCC, and clang-19 with ASan+UBSan and libFuzzer) and run every test
#   make bench  benchmark on synthetic models of real shapes, the store's run-by-run lifecycle table, the exported appliance beside the JIT
#   make build  leave the executable at build/bareflow
#   make fuzz   every libFuzzer target for FUZZ_SECONDS (default 600), corpora kept in build-san/fuzz-corpus
#   make soak   long seeded runs (scripts/soak.sh): 1M random system calls in the unikernel, 200+ store crash trials
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 600

.PHONY: build run test bench bench-peers demo image deps clean fuzz soak

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

run: build
	@ARGS="$(ARGS)" scripts/run-default.sh

build-san: deps
	@cmake -S . -B build-san -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-19 \
	  -DCMAKE_C_COMPILER=clang-19 -DBAREFLOW_SANITIZE=ON -DBAREFLOW_FUZZ=ON >/dev/null
	@cmake --build build-san -j $(JOBS)

test: build build-san
	cd build && XDG_CACHE_HOME=$(CURDIR)/build/test-cache ctest --output-on-failure -j $(JOBS)
	cd build-san && XDG_CACHE_HOME=$(CURDIR)/build-san/test-cache ctest --output-on-failure -j $(JOBS)

fuzz: build-san
	@FUZZ_SECONDS=$(FUZZ_SECONDS) cmake --build build-san --target fuzz

demo: build
	@python3 scripts/demo.py build/bareflow $(if $(ACCEL),--accel $(ACCEL))

soak: build
	@scripts/soak.sh $(SOAK_PARTS)

image: build
	@cmake --build build -j $(JOBS) --target image

bench: build
	build/bareflow bench
	@for m in "stories110M q8_0" "tinyllama-1.1b q4_0"; do \
	  python3 bench/tools/lifecycle.py build/bareflow build/bench/bench_synth_model ../shared/models/tokenizer.bin $$m 3 64; done
	python3 bench/tools/export_bench.py build/bareflow build/bench/bench_synth_model ../shared/models/tokenizer.bin stories110M q8_0 3 64

bench-peers: build
	build/bareflow bench --peers $(PEERS_FLAGS)

clean:
	rm -rf build build-san
