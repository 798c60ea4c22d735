# Thin front door to CMake. `make` builds, `make test` runs the suite, `make demo` runs the main job
# on a small synthetic dataset, `make bench` times the engine against PyTorch, `make deps` installs
# the Debian packages the build needs.
BUILD      ?= build
JOBS       ?= $(shell nproc)
CUDA_ARCHS ?=
CPU_ONLY   ?= 0
# python3-torch: the PyTorch twins of the networks run at test time (their weights are too large to commit).
DEPS       := cmake g++ make libstb-dev nlohmann-json3-dev doctest-dev libopenblas-openmp-dev python3-torch python3-scipy python3-skimage

# libgomp's idle threads spin 300,000 rounds after each parallel region before they sleep:
# harmless alone on the cores, but beside another busy process (`ctest -j`, a second run, a build) each side's
# spinning takes the cores the other needs. Measured on 2 cores, an inik training step beside an sft run: 19.6 s
# spinning as libgomp does, 7.9 s at 10,000 rounds (alone: 3.88 and 3.89-3.94 s). A user's choice wins.
ifeq ($(origin OMP_WAIT_POLICY)$(origin GOMP_SPINCOUNT),undefinedundefined)
export GOMP_SPINCOUNT := 10000
endif

CMAKE_ARGS := -DCMAKE_BUILD_TYPE=Release
ifneq ($(CUDA_ARCHS),)
CMAKE_ARGS += -DREFOCUS_CUDA_ARCHS="$(CUDA_ARCHS)"
endif
ifeq ($(CPU_ONLY),1)
CMAKE_ARGS += -DREFOCUS_CUDA=OFF
endif

.PHONY: all build deps debs configure test demo bench golden clean

all: build

deps:
	@missing=""; for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The Debian packages a GPU machine without them needs, downloaded into .debs/ (scripts/gpu_check.sh unpacks them).
debs:
	mkdir -p .debs && cd .debs && apt-get download libstb-dev libstb0 nlohmann-json3-dev doctest-dev

configure: deps
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	./scripts/demo.sh $(BUILD)

bench: build
	./bench/run_all.sh $(BUILD)

# Rewrite the PyTorch golden files (needs Debian's python3-torch and python3-skimage).
golden:
	/usr/bin/python3 tests/golden/make_golden.py

clean:
	rm -rf $(BUILD)
