# Developer shortcuts. `make bench ARGS="--rows 200000 --db postgresql --phases"`

# := and not ?=: an exported PYTHON (the interpreter scripts/bootstrap.sh makes .venv with) is not
# the venv; `make bench PYTHON=...` still overrides it.
PYTHON := .venv/bin/python
ARGS ?=

.PHONY: bench bench-nlu bench-faq bench-dialog bench-selfservice bench-sms bench-outbox test run

# Issue #2: import a million customers and recompute their tiers on SQLite and PostgreSQL.
bench:
	$(PYTHON) -m bench.import_tiers $(ARGS)

# Issue #4: intent accuracy, FAQ top-1 accuracy, and dialog turns/s with p99 latency.
bench-nlu:
	$(PYTHON) -m bench.nlu_accuracy $(ARGS)

bench-faq:
	$(PYTHON) -m bench.faq_accuracy $(ARGS)

bench-dialog:
	$(PYTHON) -m bench.dialog_turns $(ARGS)

# Issue #13: held-out customer questions through the whole inbound path; the outcome mix per language.
bench-selfservice:
	$(PYTHON) -m bench.selfservice $(ARGS)

# Issue #10: signed Twilio webhooks through the whole inbound path; the outbox drained to local fakes.
bench-sms:
	$(PYTHON) -m bench.sms_inbound $(ARGS)

bench-outbox:
	$(PYTHON) -m bench.outbox_drain --database postgresql $(ARGS)
	$(PYTHON) -m bench.outbox_drain --database sqlite $(ARGS)

test:
	bash scripts/test.sh $(ARGS)

run:
	bash scripts/demo.sh $(ARGS)
