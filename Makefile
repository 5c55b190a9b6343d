PYTHON ?= python3

.PHONY: proto proto-check lint test

proto:  ## regenerate api/cri/*_pb2*.py from api/cri/api.proto
	$(PYTHON) api/cri/generate.py

proto-check:
	$(PYTHON) api/cri/generate.py --check

lint:
	ruff check .
	ruff format --check server adapters tools tests crictl_tests bench
	mypy

test:
	$(PYTHON) -m pytest
