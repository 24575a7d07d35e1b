# Developer shortcuts. `make bench ARGS="--rows 200000 --db postgresql --phases"`

PYTHON ?= .venv/bin/python
ARGS ?=

.PHONY: bench

# Issue #2: import a million customers and recompute their tiers on SQLite and PostgreSQL.
bench:
	$(PYTHON) -m bench.import_tiers $(ARGS)
