#!/usr/bin/env bash
# The project's test command (README, CI): lint, layer contract, then the whole suite.
set -euo pipefail
ruff check .
lint-imports
python -m pytest -n 2 -q
