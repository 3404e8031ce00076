# Issue 6's hardening tests alone: Schemathesis, a database outage, several processes, SIGTERM,
# metrics and abusive requests, all against real uvicorn processes on PostgreSQL.
# `make test` runs them too (they live under tests/); CI=true raises the fuzzing to 200 cases
# per operation.

.PHONY: hardening
hardening: install ## Only the hardening tests (real uvicorn + PostgreSQL; CI=true: 200 cases/operation)
	$(BIN)/pytest tests/hardening $(PYTEST_ARGS)
