# Set-up and the everyday commands (`make test-fast`: the quick part of `make test`). Each target creates or updates the local virtualenv first.
# mmcv 2.1.0 has no binary wheel on PyPI: pip takes the one in $(SHARED)/wheels when it is there,
# and otherwise builds the sdist (about 17 min on 2 cores).
PYTHON ?= python3
VENV ?= .venv
SHARED ?= ../shared
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export YOLO_OFFLINE ?= 1

.PHONY: demo test test-fast install clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt --find-links $(SHARED)/wheels -e ".[mmdet,dev,fast]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/eval_coco.py --t 0.25 --overwrite

test: $(STAMP)
	$(PY) -m pytest

# The unit and fake-detector tests, under 2 minutes: every test over 10 s is marked `slow` (pytest.ini).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
