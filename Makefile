# Template commands. Only python3, make and git are needed: everything else goes into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUILD := build
PROJECT := shop-recommender

.PHONY: setup demo test test-fast lint docs pictures release clean

# The docs' mermaid diagrams are drawn by npm's mermaid package, copied into the built site
# (scripts/mkdocs_mermaid.py): installed with npm when it is there; without it `make docs` stops
# and says so.
MERMAID := .tools/node/node_modules/mermaid/dist/mermaid.min.js
HAS_NPM := $(shell command -v npm 2>/dev/null)

setup: $(VENV)/.installed $(if $(HAS_NPM),$(MERMAID))

# gitlab-ci-local runs a bake's .gitlab-ci.yml jobs on this machine (tests/test_ci_gitlab.py):
# npm's package, 4.52 being the last release that runs on Node 20 (newer ones need Node 22).
# Installed when npm is there (.ci/run installs it); without, those tests skip.
GITLAB_CI_LOCAL := .tools/node/node_modules/.bin/gitlab-ci-local
WITH_NPM := $(if $(HAS_NPM),$(GITLAB_CI_LOCAL))
$(GITLAB_CI_LOCAL):
	npm install --prefix .tools/node --no-audit --no-fund --silent gitlab-ci-local@4.52.0

$(MERMAID):
	npm install --prefix .tools/node --no-audit --no-fund --silent --save-exact mermaid@11.17.2
	touch $@

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Bake the default project into ./build and run its golden path.
demo: setup
	rm -rf $(BUILD)/$(PROJECT)
	scripts/bake.sh $(BUILD)
	$(MAKE) -C $(BUILD)/$(PROJECT) setup demo

# The template's whole test suite: every option bakes, the default bake runs for real.
# A pass on a clean working tree is recorded in build/tests-passed (the commit tested), which
# `make release` requires; a dirty tree or a failure records nothing. Exits with pytest's code.
test: setup $(WITH_NPM)
	$(PYTHON) scripts/release.py record-tests -- \
	  $(BIN)/pytest tests -n 2 --dist loadgroup --durations=30

# The fast tier (no end-to-end runs of the baked project): under two minutes on 2 cores.
test-fast: setup $(WITH_NPM)
	$(BIN)/pytest tests -m "not slow" -n 2 --dist loadgroup

lint: setup
	$(BIN)/ruff check hooks tests scripts local_extensions.py
	$(BIN)/ruff format --check hooks tests scripts local_extensions.py

# The documentation site (getting started, workshop, architecture, reference, runbooks,
# decisions) into build/site.
docs: setup
	$(BIN)/mkdocs build --strict

# The screenshots in docs/assets/pictures (docs/pictures.md) from a bake after `make demo`:
# make pictures [PROJECT_DIR=build/shop-recommender]
PROJECT_DIR ?= $(BUILD)/$(PROJECT)
pictures: setup
	$(BIN)/python scripts/doc_pictures.py $(PROJECT_DIR)

# Tag a release: make release VERSION=x.y.z (docs/releasing.md). Checks VERSION, CHANGELOG.md,
# a clean tree, a new tag and build/tests-passed for HEAD, then creates the annotated tag
# vx.y.z; it never pushes. VERSION reaches the script through the environment, unexpanded.
release:
	$(PYTHON) scripts/release.py release "$$VERSION"

clean:
	rm -rf $(BUILD) $(VENV)
