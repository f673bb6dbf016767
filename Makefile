# Installs into the active Python environment (your conda env or venv), as CoOp-family repos do.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# Dassl is not on PyPI. DASSL_SRC=/path/to/Dassl.pytorch installs a local checkout; otherwise the
# pinned upstream commit is installed from Git.
DASSL_SRC ?=
DASSL_GIT ?= https://github.com/KaiyangZhou/Dassl.pytorch.git
DASSL_COMMIT ?= c61a1b570ac6333bd50fb5ae06aea59002fb20bb
DATA ?= ./data

.PHONY: install requirements dassl test demo bench

install: requirements dassl

requirements:
	$(PIP) install -q -r requirements.txt

dassl:
	@if $(PYTHON) -c "import dassl" 2>/dev/null; then \
		echo "Dassl already installed: $$($(PYTHON) -c 'import dassl, os; print(os.path.dirname(dassl.__file__))')"; \
	elif [ -n "$(DASSL_SRC)" ]; then \
		$(PIP) install -q --no-build-isolation -e "$(DASSL_SRC)"; \
	else \
		GIT_TERMINAL_PROMPT=0 timeout 300 $(PIP) install -q --no-build-isolation \
			"git+$(DASSL_GIT)@$(DASSL_COMMIT)" \
		|| echo "WARNING: could not install Dassl from $(DASSL_GIT) (no network?). Training needs it: clone Dassl.pytorch elsewhere and run 'make install DASSL_SRC=/path/to/Dassl.pytorch'. Tests that need Dassl will be skipped."; \
	fi

test: install
	$(PYTHON) -m pytest

demo: install
	$(PYTHON) -m tools.demo.run --data $(DATA)

bench: install
	$(PYTHON) -m tools.bench --data $(DATA)
