# ssm-audit: the two commands a newcomer runs are `make demo` and `make test`.
CARGO ?= cargo
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: build venv demo test test-rust test-clients test-deploy lint bench container clean

build:
	$(CARGO) build --all-targets

# The Python tools the tests and the demo use, in a venv of their own.
$(VENV)/.installed: scripts/requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
	touch $@

venv: $(VENV)/.installed

demo: build venv
	PY=$(PY) bash scripts/demo.sh

# Every AWS operation the integration tests' runs make is recorded here, for
# the IAM check of test-clients (tests/clients/test_iam.py).
OPERATIONS := $(CURDIR)/target/aws-operations

test: build venv test-rust test-clients test-deploy

test-rust:
	rm -rf $(OPERATIONS)
	SSM_AUDIT_RECORD_OPERATIONS=$(OPERATIONS) $(CARGO) test --all-targets

test-clients:
	cd tests/clients && SSM_AUDIT_RECORD_OPERATIONS=$(OPERATIONS) ../../$(PY) -m pytest -q

# The deployment files: the Dockerfile (hadolint) and the CloudFormation
# templates (cfn-lint); their IAM policies are checked in test-clients.
test-deploy: venv
	$(VENV)/bin/hadolint deploy/Dockerfile
	$(VENV)/bin/cfn-lint deploy/nightly.yaml deploy/member-role.yaml

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# The adaptive crawl against the AWS CLI and a boto3 script, the pacer
# against rate limits (every case of BENCHMARKS.md), skewed months in both
# orders run after run, then a million sessions for memory, then an
# organization of mostly empty accounts, then clearing staged parts on S3;
# publishing a skewed first night is timed on its own, from its trace.
bench: venv
	PY=$(PY) bash scripts/bench-adaptive.sh
	bash scripts/bench-pace.sh
	bash scripts/bench-skew.sh
	PY=$(PY) bash scripts/bench-nightly.sh
	bash scripts/bench-publish.sh
	bash scripts/bench.sh
	bash scripts/bench-org.sh
	PY=$(PY) bash scripts/bench-s3-clear.sh
	PY=$(PY) bash scripts/bench-report.sh

# deploy/Dockerfile built and run with podman (a release build; not in `make
# test`: README, "Run it nightly", says what is built here and what linted).
container:
	bash scripts/container.sh

clean:
	rm -rf demo-output
