# Installs into the active Python environment (your conda env or venv), as CoOp-family repos do.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# Dassl is not on PyPI. DASSL_SRC=/path/to/Dassl.pytorch installs a local checkout; otherwise the
# pinned upstream commit is installed from Git.
DASSL_SRC ?=
DASSL_GIT ?= https://github.com/KaiyangZhou/Dassl.pytorch.git
DASSL_COMMIT ?= c61a1b570ac6333bd50fb5ae06aea59002fb20bb
DATA ?= ./data
# seeds of make demo (the README's comparison uses SEEDS="1 2 3 4 5") and of make ablation
SEEDS ?= 1
ABLATION_SEEDS ?= 1 2 3 4 5
DEMO_WEIGHTS = $(DATA)/weights/tiny_clip_synthetic.pt
# make tune's runs, one folder per data root (/data/demo -> output/demo_tuning/data_demo): a sweep skips finished
# runs, so two roots sharing a folder would reuse each other's results
TUNE_OUT = output/demo_tuning/$(subst /,_,$(patsubst /%,%,$(abspath $(DATA))))

.PHONY: install requirements dassl test demo tune ablation bench

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
	$(PYTHON) -m tools.demo.run --data $(DATA) --seeds $(SEEDS)

# The demo recipes' tuning: every method's grid (tools/demo/tuning/<TRAINER>.yaml, the same budget for each) on
# the validation split held out of the demo domain's train file; the test split is never looked at.
tune: install
	$(PYTHON) -m tools.demo.build --data $(DATA) --quiet
	for spec in tools/demo/tuning/*.yaml; do \
		$(PYTHON) -m tools.sweep $$spec --set data=$(DATA) --set out=$(TUNE_OUT) --set python=$(PYTHON) || exit 1; \
	done
	$(PYTHON) -m tools.parse_results $(TUNE_OUT)

# DCAR's ablation on the demo domain (scripts/dcar/ablation.sh with the demo recipe), then its table.
ablation: install
	$(PYTHON) -m tools.demo.build --data $(DATA) --quiet
	CFG=demo SEEDS="$(ABLATION_SEEDS)" DATA=$(DATA) PYTHON=$(PYTHON) bash scripts/dcar/ablation.sh fdrd_synthetic 16 \
		MODEL.BACKBONE.NAME $(DEMO_WEIGHTS)
	$(PYTHON) -m tools.paper_tables ablation output/fdrd_synthetic/DCAR/demo@tiny_clip_synthetic_16shots --std

bench: install
	$(PYTHON) -m tools.bench --data $(DATA)
