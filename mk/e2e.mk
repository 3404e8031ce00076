# Browser tests and the README screenshot: Debian's Chromium driven by Playwright's Python API
# against the real app (tests/e2e). Playwright's own browser download is never used.

CHROMIUM_PACKAGES := chromium fonts-liberation fonts-dejavu-core

.PHONY: chromium
chromium: ## Install Debian's Chromium for the browser tests, if it is missing
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "==> installing $(CHROMIUM_PACKAGES) with apt-get"; \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $(CHROMIUM_PACKAGES) >/dev/null; \
	fi
	@chromium --version 2>/dev/null

# `make test` runs the browser tests too, so it needs the browser first.
test: chromium

.PHONY: test-e2e
test-e2e: install chromium ## Run only the browser tests (tests/e2e, marker e2e)
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

.PHONY: screenshot
screenshot: install chromium ## Regenerate docs/screenshot*.png (purchase page, phone, dashboard) from the real pages
	$(BIN)/python -m tests.e2e.screenshot docs
