# The README's two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-apimodels
# Debian packages the tests use: ipmi_sim (BMC), tftp-hpa + curl (TFTP clients), tftpd-hpa (bench peer),
# dash (the strict POSIX shell every rendered script is run under), postgresql (the store tests and
# an e2e rebuild also run on a real PostgreSQL server the tests start themselves), dnsmasq-base,
# kea-dhcp4-server and isc-dhcp-server (their checkers read `provision dhcp export`); for `make bench`
# also wrk (HTTP load) and nginx-light (the HTTP peer)
DEB_PACKAGES := openipmi tftp-hpa tftpd-hpa curl dash libxml2-dev postgresql dnsmasq-base kea-dhcp4-server isc-dhcp-server

.PHONY: run test test-stress bench lint system-deps bench-deps venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# the API models the fakes are checked against, for the tests only (needs libxml2-dev: system-deps)
$(TSTAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,apimodels]'
	$(BIN)/pip install -q --no-deps 'ipaclient>=4.12'
	touch $(TSTAMP)

venv: $(STAMP)

# Installs missing Debian packages when run as root; otherwise says what is missing.
# `make bench` also needs its load generator and HTTP peer: wrk and nginx.
DEB_COMMANDS := ipmi_sim:openipmi tftp:tftp-hpa in.tftpd:tftpd-hpa curl:curl dash:dash xml2-config:libxml2-dev \
                dnsmasq:dnsmasq-base kea-dhcp4:kea-dhcp4-server dhcpd:isc-dhcp-server
system-deps bench-deps:
	@missing=""; \
	for cmd in $(DEB_COMMANDS) $(if $(filter bench-deps,$@),wrk:wrk nginx:nginx-light); do \
	  command -v $${cmd%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${cmd%%:*} ] || missing="$$missing $${cmd##*:}"; \
	done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else \
	    echo "missing Debian packages:$$missing (run make as root, or apt-get install them)"; exit 1; \
	  fi; \
	fi

run: $(STAMP)
	$(BIN)/provision node import examples/inventory.yaml
	$(BIN)/provision serve

test: system-deps $(TSTAMP)
	$(BIN)/python -m pytest -q

# The suite RUNS times (default 5) while two busy processes keep both cores loaded: a test that
# races a wall-clock guess fails here before it fails in CI.
RUNS ?= 5
test-stress: system-deps $(TSTAMP)
	@$(BIN)/python -c 'while True: pass' & b1=$$!; $(BIN)/python -c 'while True: pass' & b2=$$!; \
	trap "kill $$b1 $$b2 2>/dev/null" EXIT; ok=0; \
	for i in $$(seq $(RUNS)); do \
	  if $(BIN)/python -m pytest -q -p no:cacheprovider; then ok=$$((ok+1)); fi; \
	done; \
	echo "test-stress: $$ok of $(RUNS) runs passed with both cores busy"; [ $$ok -eq $(RUNS) ]

bench: $(STAMP) system-deps bench-deps
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check provision tests bench

clean:
	rm -rf $(VENV) var
