# dicom-etl — the two commands of the README, and the steps they are made of.
#   make run   installs what is missing, builds, runs the daemon on ./drop (embedded PostgreSQL, filesystem store)
#   make test  installs what is missing, builds, starts PostgreSQL and an S3 server, runs every test
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := libdcmtk-dev dcmtk libopenblas-dev libopenjp2-7-dev zlib1g-dev libssl-dev libpq-dev \
	libtesseract-dev libleptonica-dev tesseract-ocr-eng fonts-dejavu-core \
	postgresql pkg-config python3-venv curl ca-certificates dicom3tools chromium openssl
SWIFT ?= swift

.PHONY: run test deps venv build build-release clean bench train train-venv bench-inference image check-deployment

run: deps venv build-release
	./scripts/run-embedded.sh

# The training-loop test needs TensorFlow (.venv-train, ≈ 4 min to install once) and PneumoniaMNIST: the venv is
# installed only where ../shared/data/medmnist (or MEDMNIST) exists, since the test is skipped without the images.
test: deps venv
	@if [ -d "$(MEDMNIST)" ]; then $(MAKE) --no-print-directory train-venv; fi
	./scripts/with-services.sh ./scripts/test.sh

deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root to install:$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
	touch $@

build: deps
	$(SWIFT) build

build-release: deps
	$(SWIFT) build -c release

# The container image (needs a Docker engine) and the deployment checks alone (also part of `make test`).
IMAGE ?= dicom-etl:latest
image:
	docker build -f deployment/Dockerfile -t $(IMAGE) .

check-deployment: deps venv
	DICOM_ETL_PYTHON=$(abspath $(PY)) scripts/check-deployment.sh

# The pneumonia CNN: TensorFlow lives in its own venv so that `make test` never needs it.
TRAIN_VENV ?= .venv-train
MEDMNIST ?= ../shared/data/medmnist
MODEL_VERSION ?= 1.0.0
TRAIN_ARGS ?= --rotate 15 --zoom 0.15 --shift 3 --label-smoothing 0.1

train-venv: $(TRAIN_VENV)/.installed

$(TRAIN_VENV)/.installed: models/requirements.txt bench/inference/requirements.txt
	python3 -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q --disable-pip-version-check -r models/requirements.txt -r bench/inference/requirements.txt
	touch $@

train: train-venv
	$(TRAIN_VENV)/bin/python models/train.py --data $(MEDMNIST) \
		--out models/trained_models/pneumonia-cnn/$(MODEL_VERSION) $(TRAIN_ARGS)

bench-inference: deps train-venv
	./bench/inference/run.sh

clean:
	rm -rf .build $(VENV) $(TRAIN_VENV)
