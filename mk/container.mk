# Container targets (issue 4): the Dockerfile and compose.yaml, linted and run for real.

.PHONY: lint-container
lint-container: install ## hadolint the Dockerfile, check compose.yaml against the compose-spec schema
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml

.PHONY: container-test
container-test: install ## Build the Dockerfile, run compose.yaml with podman on stand-in base images
	PODMAN_COMPOSE=$(BIN)/podman-compose $(BIN)/python deploy/container_test.py
