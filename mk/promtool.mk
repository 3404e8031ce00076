# Prometheus's linter for the /metrics exposition (tests/test_metrics.py and
# tests/hardening/test_metrics_workers.py run `promtool check metrics`): Debian's prometheus
# package, which ships promtool. The package's server is not started by the tests.

PROMTOOL_PACKAGES := prometheus

.PHONY: promtool
promtool: ## Install Debian's prometheus package (promtool) for the metrics tests, if it is missing
	@if ! command -v promtool >/dev/null 2>&1; then \
		echo "==> installing $(PROMTOOL_PACKAGES) with apt-get"; \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends \
			$(PROMTOOL_PACKAGES) >/dev/null; \
	fi
	@promtool --version 2>&1 | head -1

# `make test` runs the metrics tests, so it needs promtool first.
test: promtool
hardening: promtool
