# The README's two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-apimodels
# Debian packages the tests use: ipmi_sim (BMC), tftp-hpa + curl (TFTP clients), tftpd-hpa (bench peer),
# dash (the strict POSIX shell every rendered script is run under), postgresql (the store tests and
# an e2e rebuild also run on a real PostgreSQL server the tests start themselves), dnsmasq-base,
# kea-dhcp4-server and isc-dhcp-server (their checkers read `provision dhcp export`), chromium and
# chromium-driver (the web console's browser test, through selenium), nginx-light (an e2e rebuild
# runs through the documented nginx front, docs/nginx.md; it is the bench's HTTP peer too), systemd
# (systemd-analyze and systemd-sysusers check packaging/provision.service), rpm and rpmlint (the
# RPM spec is parsed and linted), slapd (the directory server console and API logins are tested
# against, laid out as FreeIPA's), prometheus (its promtool checks and tests docs/prometheus' alert
# rules), and the VM
# test's packages (VM_COMMANDS, VM_FILES below); for `make bench` also wrk (HTTP load)
DEB_PACKAGES := openipmi tftp-hpa tftpd-hpa curl dash libxml2-dev postgresql dnsmasq-base kea-dhcp4-server isc-dhcp-server \
                qemu-system-x86 ovmf ipxe-qemu shim-signed grub-efi-amd64-bin pxelinux isolinux syslinux-common \
                linux-image-amd64 dracut dracut-network isc-dhcp-client iputils-arping

.PHONY: run test e2e test-stress bench lint system-deps bench-deps venv clean

$(STAMP): pyproject.toml setup.py provision/tftp/_sendloop.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# the API models the fakes are checked against, and libvirt-python for the VM test's Redfish case,
# for the tests only (they build against libxml2-dev and libvirt-dev: system-deps)
$(TSTAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,apimodels,vmlab]'
	$(BIN)/pip install -q --no-deps 'ipaclient>=4.12'
	touch $(TSTAMP)

venv: $(STAMP)

# Installs missing Debian packages when run as root; otherwise says what is missing.
# `make bench` also needs its load generator and HTTP peer: wrk and nginx.
DEB_COMMANDS := ipmi_sim:openipmi tftp:tftp-hpa in.tftpd:tftpd-hpa curl:curl dash:dash xml2-config:libxml2-dev \
                dnsmasq:dnsmasq-base kea-dhcp4:kea-dhcp4-server dhcpd:isc-dhcp-server \
                chromium:chromium chromedriver:chromium-driver nginx:nginx-light \
                systemd-analyze:systemd systemd-sysusers:systemd rpmspec:rpm rpmlint:rpmlint slapd:slapd \
                promtool:prometheus
# the virtual machine of tests/test_vm.py (`make e2e`): QEMU with OVMF and iPXE ROMs, Debian's shim,
# GRUB's EFI modules, pxelinux.0, isolinux.bin and their ldlinux.c32, a kernel, and dracut with its network modules (dhclient and arping for them),
# mkfs.vfat and mtools (a UEFI El Torito image); for its Redfish case libvirtd with its QEMU driver and
# libvirt-dev (libvirt-python builds against it), installed without their recommends (all of QEMU's
# architectures, lvm2, ...: LIBVIRT_PACKAGES)
VM_COMMANDS := qemu-system-x86_64:qemu-system-x86 grub-mkimage:grub-efi-amd64-bin dracut:dracut \
               dhclient:isc-dhcp-client arping:iputils-arping mkfs.vfat:dosfstools mcopy:mtools \
               libvirtd:libvirt-daemon pkg-config:pkg-config
LIBVIRT_PACKAGES := libvirt-daemon libvirt-daemon-driver-qemu libvirt-dev
# installed without their recommends too: prometheus for its promtool (the alert rules in docs/prometheus)
NOREC_PACKAGES := $(LIBVIRT_PACKAGES) prometheus
VM_FILES := /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf /usr/lib/shim/shimx64.efi.signed:shim-signed \
            /usr/lib/grub/x86_64-efi/efinet.mod:grub-efi-amd64-bin /usr/lib/ipxe/qemu/pxe-virtio.rom:ipxe-qemu \
            /usr/lib/PXELINUX/pxelinux.0:pxelinux /usr/lib/ISOLINUX/isolinux.bin:isolinux \
            /usr/lib/syslinux/modules/bios/ldlinux.c32:syslinux-common \
            /usr/lib/dracut/modules.d/35network-legacy/module-setup.sh:dracut-network \
            /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so:libvirt-daemon-driver-qemu \
            /usr/lib/x86_64-linux-gnu/pkgconfig/libvirt.pc:libvirt-dev
system-deps bench-deps:
	@missing=""; \
	for cmd in $(DEB_COMMANDS) $(VM_COMMANDS) $(if $(filter bench-deps,$@),wrk:wrk); do \
	  command -v $${cmd%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${cmd%%:*} ] || missing="$$missing $${cmd##*:}"; \
	done; \
	for f in $(VM_FILES); do [ -e $${f%%:*} ] || missing="$$missing $${f##*:}"; done; \
	ls /boot/vmlinuz-* >/dev/null 2>&1 || missing="$$missing linux-image-amd64"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    norec=""; rest=""; \
	    for p in $$missing; do case " $(NOREC_PACKAGES) " in *" $$p "*) norec="$$norec $$p";; *) rest="$$rest $$p";; esac; done; \
	    apt-get update -q && \
	    { [ -z "$$rest" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$rest; } && \
	    { [ -z "$$norec" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$norec; } || exit 1; \
	  else \
	    echo "missing Debian packages:$$missing (run make as root, or apt-get install them)"; exit 1; \
	  fi; \
	fi

run: $(STAMP)
	$(BIN)/provision node import examples/inventory.yaml
	$(BIN)/provision serve

test: system-deps $(TSTAMP)
	$(BIN)/python -m pytest -q

# the boot chain on a real virtual machine alone (it is part of `make test` too), with its timelines
e2e: system-deps $(TSTAMP)
	$(BIN)/python -m pytest -q -s tests/test_vm.py

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

# style and types: CI runs it before the tests
lint: $(STAMP)
	$(BIN)/ruff check provision tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var
