# Two entry points for a fresh machine: `make demo` (main job end to end) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The exact versions the training image installs (images/write_constraints.py), so CI tests what ships.
CONSTRAINTS := images/train-constraints.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(CONSTRAINTS) | sha1sum | cut -c1-12)

.PHONY: demo test venv bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU torch wheel first, so nothing later resolves torch to a CUDA build.
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) torch==2.13.0
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	# tritonserver for local serving: the wheel pins numpy<2 but its python backend runs with numpy 2,
	# so install it without its dependencies (tritonclient is already a dependency).
	$(BIN)/python -m pip install --quiet --no-deps nvidia-pytriton==0.7.0
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/state pipeline run --local --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf demo_out .pytest_cache
