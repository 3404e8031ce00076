# Debian's PgBouncer for the tests that run the PostgreSQL suite through a transaction pooler
# (tests/pgbouncer.py starts a throwaway one per run). Installed with apt when missing, as the
# browser tests' chromium is (mk/e2e.mk); the package's own service is never used.

.PHONY: pgbouncer
pgbouncer: ## Install Debian's pgbouncer for the pooler tests, if it is missing
	@if ! PATH="$$PATH:/usr/sbin" command -v pgbouncer >/dev/null 2>&1; then \
		echo "==> installing pgbouncer with apt-get"; \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq pgbouncer >/dev/null; \
	fi
	@PATH="$$PATH:/usr/sbin" pgbouncer --version | head -1

# `make test` and `make hardening` run the pooler tests too.
test: pgbouncer
hardening: pgbouncer
