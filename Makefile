# Two commands do everything on a fresh machine (Python 3.11, no GPU):
#   make demo   generate the demo data, train UperNet DeiT-T on it (CPU,
#               about 10 minutes on 2 cores), evaluate it with tools/test.py
#   make test   run the test suite, operator budgets included
#               (PYTEST_ARGS='-m "not op_budget"' leaves those out,
#               PYTEST_ARGS='-m op_budget' runs only them), in
#               PYTEST_WORKERS processes (pytest-xdist; 0 runs in one)
# Both create $(VENV) first when it is missing; VENV=/path/to/env uses another.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cait_mm-installed

DEMO_CONFIG ?= configs/demo/upernet_deit_t_demo_shapes.py
DEMO_DATA ?= data/demo_shapes
DEMO_WORK_DIR ?= work_dirs/demo
PYTEST_ARGS ?=
# two processes halve the many tool runs' start-up (importing mmseg, mmdet);
# --dist loadfile keeps a module's shared fixtures and compiled graphs together
PYTEST_WORKERS ?= 2

.PHONY: demo test install demo-data

install: $(STAMP)

$(STAMP): requirements.txt setup.cfg pyproject.toml tools/misc/setup_env.sh
	bash tools/misc/setup_env.sh $(VENV)
	touch $@

demo-data: $(DEMO_DATA)/annotations/instances_validation.json

$(DEMO_DATA)/annotations/instances_validation.json: | $(STAMP)
	$(PY) tools/misc/make_demo_data.py --out $(DEMO_DATA)

demo: $(STAMP) demo-data
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) "$$(cat $(DEMO_WORK_DIR)/last_checkpoint)" \
		--work-dir $(DEMO_WORK_DIR)/test

test: $(STAMP)
	$(PY) -m pytest tests -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
