PREFIX ?= /usr
LIBEXEC_EXT ?= $(PREFIX)/libexec/libostree/ext

.PHONY: all install test demo
all:
	cargo build --release -p ostree-container

# Installs the CLI, and the plugin path through which `ostree container ...` finds it.
install: all
	install -D -m 0755 target/release/ostree-container $(DESTDIR)$(PREFIX)/bin/ostree-container
	install -d $(DESTDIR)$(LIBEXEC_EXT)
	ln -sf ../../../bin/ostree-container $(DESTDIR)$(LIBEXEC_EXT)/ostree-container

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh
