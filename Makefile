PREFIX ?= /usr
LIBEXEC_EXT ?= $(PREFIX)/libexec/libostree/ext
UNITDIR ?= $(PREFIX)/lib/systemd/system

.PHONY: all install test demo
all:
	cargo build --release -p ostree-container

# Installs the CLI, and the plugin path through which `ostree container ...` finds it.
install: all
	install -D -m 0755 target/release/ostree-container $(DESTDIR)$(PREFIX)/bin/ostree-container
	install -d $(DESTDIR)$(LIBEXEC_EXT)
	ln -sf ../../../bin/ostree-container $(DESTDIR)$(LIBEXEC_EXT)/ostree-container
	install -d $(DESTDIR)$(UNITDIR)
	install -m 0644 hooks/systemd/ostree-bridge-upgrade.path hooks/systemd/ostree-bridge-upgrade.timer \
		hooks/systemd/ostree-bridge-upgrade.service $(DESTDIR)$(UNITDIR)/
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/ostree-bridge/README.md

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh
