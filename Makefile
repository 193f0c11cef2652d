# The two commands of the README: `make app` and `make test`.
.PHONY: setup app test lint bench

setup:
	bash scripts/setup.sh

app: setup
	.venv/bin/alignplan tiny-model runs/tiny-model
	.venv/bin/streamlit run app.py --server.address 127.0.0.1 --server.headless true

test:
	bash scripts/setup.sh --browser
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q --timeout 900

lint:
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python bench/planner_speed.py
