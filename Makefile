# followupd build. `make` builds build/followupd; `make test` installs what it needs,
# builds, and runs unit + integration tests (real PostgreSQL) + the compliance gate.
# `make SANITIZE=address,undefined test` rebuilds everything with sanitizers (a flags
# stamp forces the rebuild when flags change). Builds print one `  CC file` line per
# step; `make V=1` prints the full commands.

PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
SANITIZE ?=
CC       ?= cc
PYTHON   ?= /usr/bin/python3

PKGS := libuv libpq libcurl jansson openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)
# A missing library stops the build here, loudly, instead of failing later with missing headers. The goals that
# install the libraries first (deps, and test/demo/bench/soak, which run deps and then a sub-make) and clean skip it.
PKG_MISSING := $(shell pkg-config --exists $(PKGS) cmocka 2>/dev/null || echo yes)
ifneq ($(PKG_MISSING),)
ifeq ($(filter deps test demo bench bench-deps soak clean,$(MAKECMDGOALS)),)
$(error pkg-config cannot find every one of: $(PKGS) cmocka (run `make deps` first))
endif
endif

LLHTTP_SRC_DIR := /usr/share/llhttp
LLHTTP_INC_DIR := /usr/share/include/llhttp

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
        -Wformat=2 -Wno-format-truncation -Wno-format-nonliteral -Wundef -Wpointer-arith -Wcast-align -Werror
CFLAGS ?= -O2 -g -D_FORTIFY_SOURCE=2
# Hardening Debian's buildflags also use (lintian checks them in the package): stack protector, full RELRO.
HARDEN_CFLAGS  := -fstack-protector-strong
HARDEN_LDFLAGS := -Wl,-z,relro -Wl,-z,now
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(CPPFLAGS) $(CFLAGS) $(HARDEN_CFLAGS) $(WARN) -fno-omit-frame-pointer \
              -Idaemon/src -I$(LLHTTP_INC_DIR) $(PKG_CFLAGS)
ALL_LDFLAGS := $(HARDEN_LDFLAGS) $(LDFLAGS)
ifneq ($(SANITIZE),)
# The sanitizers check the plain libc functions; fortified variants would bypass them.
ALL_CFLAGS  += -U_FORTIFY_SOURCE -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
ALL_LDFLAGS += -fsanitize=$(SANITIZE)
endif

# Quiet build lines (redis/pgbouncer style): V=1 shows every command instead; `make -s` prints neither.
V ?= 0
ifeq ($(V),1)
QUIET_CC   :=
QUIET_LINK :=
QUIET_AR   :=
else ifneq ($(findstring s,$(firstword -$(MAKEFLAGS))),)
QUIET_CC   := @
QUIET_LINK := @
QUIET_AR   := @
else
QUIET_CC    = @printf '  %-7s %s\n' CC $<;
QUIET_LINK  = @printf '  %-7s %s\n' LINK $@;
QUIET_AR    = @printf '  %-7s %s\n' AR $@;
endif

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.1.0)
ALL_CFLAGS += -DFOLLOWUPD_VERSION='"$(VERSION)"'

# Rebuild everything when the flags change (switching SANITIZE on/off).
FLAGS_STAMP := $(BUILD)/.flags
$(shell mkdir -p $(BUILD) && echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $(FLAGS_STAMP) || echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' > $(FLAGS_STAMP))

LIB_SRCS := $(shell find daemon/src -name '*.c' ! -name main.c | sort)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/daemon/src/main.o
LIB      := $(BUILD)/libfollowupd.a

LLHTTP_SRCS := $(wildcard $(LLHTTP_SRC_DIR)/*.c)
LLHTTP_OBJS := $(patsubst $(LLHTTP_SRC_DIR)/%.c,$(BUILD)/llhttp/%.o,$(LLHTTP_SRCS))
LLHTTP_LIB  := $(BUILD)/libllhttp.a

TEST_SRCS := $(sort $(wildcard tests/unit/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_SRCS := $(sort $(wildcard tests/unit/support/*.c))
TEST_SUPPORT_OBJS := $(TEST_SUPPORT_SRCS:%.c=$(BUILD)/obj/%.o)

TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)

BIN := $(BUILD)/followupd

# Test support objects are built by the pattern rule only: keep them (make would delete them as intermediates).
.SECONDARY: $(TEST_SUPPORT_OBJS)

.PHONY: all deps test unit compliance lint format install uninstall clean demo compdb deb
all: $(BIN) $(TEST_BINS) $(TOOL_BINS)

$(BIN): $(MAIN_OBJ) $(LIB) $(LLHTTP_LIB)
	$(QUIET_LINK)$(CC) $(ALL_CFLAGS) -o $@ $(MAIN_OBJ) $(LIB) $(LLHTTP_LIB) $(PKG_LIBS) $(ALL_LDFLAGS) -lm

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(QUIET_AR)ar rcs $@ $^

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(QUIET_CC)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# Third-party llhttp sources from Debian's node-llhttp: their own flags, no -Werror.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(QUIET_CC)$(CC) -std=c11 -O2 -g -w -fPIC -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC_DIR) $(if $(SANITIZE),-fsanitize=$(SANITIZE)) -c -o $@ $<

$(LLHTTP_LIB): $(LLHTTP_OBJS)
	@rm -f $@
	$(QUIET_AR)ar rcs $@ $^

$(BUILD)/tests/%: tests/unit/%.c $(TEST_SUPPORT_OBJS) $(LIB) $(LLHTTP_LIB) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(QUIET_LINK)$(CC) $(ALL_CFLAGS) -Itests/unit -MMD -MP -o $@ $< $(TEST_SUPPORT_OBJS) $(LIB) $(LLHTTP_LIB) $(CMOCKA_LIBS) $(PKG_LIBS) $(ALL_LDFLAGS) -lm

$(BUILD)/tools/%: tests/tools/%.c $(LIB) $(LLHTTP_LIB) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(QUIET_LINK)$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(LIB) $(LLHTTP_LIB) $(PKG_LIBS) $(ALL_LDFLAGS) -lm

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Debian packages for build, tests and demo. Idempotent and quiet when present.
DEB_PKGS := build-essential pkg-config libuv1-dev libpq-dev libcurl4-openssl-dev \
            libjansson-dev libssl-dev libcmocka-dev node-llhttp \
            postgresql-15 postgresql-client-15 postgresql-common python3 python3-cryptography \
            openssl curl systemd cppcheck clang-tidy clang libclang-rt-14-dev valgrind
# Tools the monitoring and packaging tests run (promtool from prometheus, YAML for the rule files, `make deb`,
# lintian), installed without their Recommends (prometheus would bring its node exporter and smartmontools).
DEB_PKGS_NORECOMMENDS := prometheus python3-yaml debhelper lintian dpkg-dev fakeroot
# Shell: print those of $(1) that are not installed.
missing_pkgs = for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done
deps:
	@missing=$$($(call missing_pkgs,$(DEB_PKGS))); norec=$$($(call missing_pkgs,$(DEB_PKGS_NORECOMMENDS))); \
	if [ -n "$$missing$$norec" ]; then \
	  echo "installing:" $$missing $$norec; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq >/dev/null && \
	  { [ -z "$$missing" ] || apt-get install -y -qq $$missing >/dev/null; } && \
	  { [ -z "$$norec" ] || apt-get install -y -qq --no-install-recommends $$norec >/dev/null; } \
	  || { echo "apt-get install failed" >&2; exit 1; }; \
	fi

unit: all
	$(PYTHON) tests/run_all.py --unit-only --build $(BUILD)

test: deps
	$(MAKE) all
	@rm -f $(BUILD)/summary.txt
	@pg_virtualenv -v 15 $(PYTHON) tests/run_all.py --build $(BUILD) --summary-file $(BUILD)/summary.txt; rc=$$?; \
	  echo; if [ -s $(BUILD)/summary.txt ]; then cat $(BUILD)/summary.txt; else echo "0 passed, 1 failed"; rc=1; fi; exit $$rc

# The main job in one command: throwaway PostgreSQL (or the one PG* points at), demo voice
# agent, followupd with conf/demo.conf, a timeline of bookings. DEMO_KEEP=1 keeps it running.
demo: deps
	$(MAKE) all
	@export FOLLOWUPD_BUILD=$(abspath $(BUILD)); \
	if [ -n "$$PGHOST" ] && pg_isready -q; then $(PYTHON) tests/demo/demo.py; \
	else pg_virtualenv -v 15 $(PYTHON) tests/demo/demo.py; fi

include mk/bench.mk

# The compliance gate (tests/compliance/scan.py; ARCHITECTURE_COMPLIANCE.md) over what was just built: its evidence
# run drives build/followupd against PostgreSQL -- the one PG* points at when PGHOST is set and reachable, else a
# throwaway one from pg_virtualenv.
compliance: all
	@export FOLLOWUPD_BUILD=$(abspath $(BUILD)); \
	if [ -n "$$PGHOST" ] && pg_isready -q; then $(PYTHON) tests/compliance/scan.py --build $(BUILD) .; \
	else pg_virtualenv -v 15 $(PYTHON) tests/compliance/scan.py --build $(BUILD) .; fi

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	  --suppress=missingIncludeSystem -I daemon/src -D_GNU_SOURCE daemon/src
	clang-tidy --quiet $(LIB_SRCS) daemon/src/main.c -- $(filter-out -Werror,$(ALL_CFLAGS))

format:
	clang-format -i $$(find daemon/src tests/unit -name '*.[ch]')

compdb:
	bear -- $(MAKE) -B all

# Install layout (PREFIX=/usr/local by default; packages use PREFIX=/usr): the binary, the systemd unit (ExecStart
# rewritten to $(PREFIX)/bin/followupd), the SQL under share/followupd/sql (where `followupd migrate` finds it),
# the man page, the example config, the Grafana dashboard and alert rules (share/followupd/monitoring),
# /etc/followupd/credentials/ (0700, for LoadCredential=) and
# /etc/followupd/followupd.conf from the example unless one exists (an operator's config is never overwritten; it is
# 0644 because the unit's dynamic user must read it: secrets go in credentials/, never in the file). INSTALL_BIN installs an already built binary without building.
# `make uninstall` removes all of that except /etc/followupd (operator data).
INSTALL_BIN ?= $(BIN)
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
MAN8_DIR ?= $(PREFIX)/share/man/man8
SHARE_DIR := $(PREFIX)/share/followupd
MONITORING_FILES := deploy/monitoring/followupd-dashboard.json deploy/monitoring/followupd-alerts.yml

install: $(INSTALL_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SHARE_DIR)/sql/migrations $(DESTDIR)$(SHARE_DIR)/sql/rollback \
	  $(DESTDIR)$(SHARE_DIR)/monitoring $(DESTDIR)$(SYSTEMD_UNIT_DIR) $(DESTDIR)$(MAN8_DIR) $(DESTDIR)/etc/followupd
	install -m 0755 $(INSTALL_BIN) $(DESTDIR)$(PREFIX)/bin/followupd
	install -m 0644 sql/migrations/*.sql $(DESTDIR)$(SHARE_DIR)/sql/migrations/
	install -m 0644 sql/rollback/*.sql $(DESTDIR)$(SHARE_DIR)/sql/rollback/
	sed 's#^ExecStart=/usr/bin/followupd #ExecStart=$(PREFIX)/bin/followupd #' systemd/followupd.service \
	  > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/followupd.service.tmp
	install -m 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/followupd.service.tmp $(DESTDIR)$(SYSTEMD_UNIT_DIR)/followupd.service
	rm -f $(DESTDIR)$(SYSTEMD_UNIT_DIR)/followupd.service.tmp
	install -m 0644 daemon/followupd.8 $(DESTDIR)$(MAN8_DIR)/followupd.8
	install -m 0644 conf/followupd.conf.example $(DESTDIR)$(SHARE_DIR)/followupd.conf.example
	install -m 0644 $(MONITORING_FILES) $(DESTDIR)$(SHARE_DIR)/monitoring/
	install -d -m 0700 $(DESTDIR)/etc/followupd/credentials
	[ -e $(DESTDIR)/etc/followupd/followupd.conf ] || \
	  install -m 0644 conf/followupd.conf.example $(DESTDIR)/etc/followupd/followupd.conf

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/followupd $(DESTDIR)$(SYSTEMD_UNIT_DIR)/followupd.service \
	  $(DESTDIR)$(MAN8_DIR)/followupd.8
	rm -rf $(DESTDIR)$(SHARE_DIR)
	@echo "kept $(DESTDIR)/etc/followupd (configuration and credentials); remove it by hand if no longer needed"

clean:
	rm -rf $(BUILD)

# ---- deb: `make deb` ------------------------------------------------------------------------------------------
# A Debian package (debian/, debhelper 13) in $(DEB_DIR): followupd_$(VERSION)_<arch>.deb (+ -dbgsym, .changes).
# dpkg-buildpackage runs on a copy of the tree in $(DEB_DIR) (its output lands next to it; the checkout stays
# clean) and packages $(INSTALL_BIN) as built, so the package holds the binary the tests ran (stripped, its debug
# symbols in -dbgsym); then lintian, which fails the target on any error. debian/changelog must be at $(VERSION). V=1 shows dpkg-buildpackage's output.
DEB_DIR := $(BUILD)/deb
DEB_SRC := $(DEB_DIR)/followupd-$(VERSION)
DEB_TREE := Makefile mk VERSION README.md daemon sql systemd conf deploy debian
DEB_LOG := $(if $(filter 1,$(V)),,> $(abspath $(DEB_DIR))/build.log 2>&1 || { tail -n 40 $(abspath $(DEB_DIR))/build.log; exit 1; })

deb: $(INSTALL_BIN)
	@v=$$(dpkg-parsechangelog -l debian/changelog -SVersion); [ "$$v" = "$(VERSION)" ] || \
	  { echo "debian/changelog is at $$v but VERSION is $(VERSION): add a changelog entry" >&2; exit 1; }
	@rm -rf $(DEB_DIR) && mkdir -p $(DEB_SRC) && cp -a $(DEB_TREE) $(DEB_SRC)/
	@printf '  %-7s %s\n' DEB $(DEB_DIR)/followupd_$(VERSION)_$$(dpkg-architecture -qDEB_HOST_ARCH).deb
	@cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL FOLLOWUPD_INSTALL_BIN=$(abspath $(INSTALL_BIN)) \
	  dpkg-buildpackage -b -us -uc $(DEB_LOG)
	@printf '  %-7s %s\n' LINTIAN $(DEB_DIR)/followupd_$(VERSION)_*.changes
	@lintian --fail-on error $(DEB_DIR)/followupd_$(VERSION)_*.changes
# ---- end of deb ---------------------------------------------------------------------------------------------

include mk/fuzz.mk
