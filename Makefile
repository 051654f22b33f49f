# Environment bootstrap. The virtual environment lives outside the checkout, keyed on the lock file's hash,
# so every checkout with the same lock reuses it; `.venv` is a link to it. The project itself is installed
# in editable mode from this checkout each time (a few seconds): the checkout that ran `make env` last is
# the one the environment imports.
PYTHON ?= python3.11
LOCK_HASH := $(shell sha256sum requirements/lock.txt | cut -c1-16)
ENV_DIR ?= $(HOME)/.cache/recrepro/venv-$(LOCK_HASH)

.PHONY: env cluster-env

env: $(ENV_DIR)/.complete
	ln -sfn $(ENV_DIR) .venv
	.venv/bin/pip install --quiet --no-deps --no-build-isolation -e .

# no prerequisite on the lock file: its hash is in the path, and a fresh clone's newer mtime must not rebuild
$(ENV_DIR)/.complete:
	rm -rf $(ENV_DIR)
	$(PYTHON) -m venv $(ENV_DIR)
	$(ENV_DIR)/bin/pip install --quiet -r requirements/lock.txt
	touch $@

# optional: the PostgreSQL driver and the SLURM executor (README, "On a cluster")
cluster-env: env
	.venv/bin/pip install --quiet -r requirements/cluster.txt
