# The console script's picture in docs/import-export.md and the README (issue 12).

.PHONY: import-screenshot
import-screenshot: install chromium ## Regenerate docs/import.png: a real import's progress bar, drawn by rich
	$(BIN)/python -m tests.imports.screenshot docs
