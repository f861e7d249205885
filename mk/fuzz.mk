# mk/fuzz.mk — libFuzzer targets (included by the Makefile).
# ==== fuzzing (fuzz/) ==========================================================================
# clang libFuzzer + ASan + UBSan.  The daemon and llhttp sources are recompiled with clang into
# $(FUZZ_BUILD) (the main build uses $(CC)); each fuzz/fuzz_<name>.c links against that archive.
#   make fuzz-build                 build every target
#   make fuzz FUZZ_SECONDS=60       run each target that long (scratch corpus in $(FUZZ_BUILD)/corpus,
#                                   seeds from fuzz/corpus/<name> are read, never written)
#   make fuzz-smoke                 the short CI run (FUZZ_SECONDS=20)
# A crash stops the run; its input lands in $(FUZZ_BUILD)/artifacts/<name>-crash-*.  See fuzz/README.md.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_BASE    := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) \
                -Idaemon/src -I$(LLHTTP_INC_DIR) $(PKG_CFLAGS) -DFOLLOWUPD_VERSION='"$(VERSION)"'
FUZZ_WARN    := $(filter-out -Werror -Wno-format-truncation,$(WARN))
FUZZ_TARGETS := $(patsubst fuzz/%.c,%,$(sort $(wildcard fuzz/fuzz_*.c)))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
FUZZ_LIB     := $(FUZZ_BUILD)/libfollowupd-fuzz.a
FUZZ_SUPPORT_SRCS := tests/unit/support/oidc_testkit.c
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o) $(FUZZ_SUPPORT_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o) \
                 $(patsubst $(LLHTTP_SRC_DIR)/%.c,$(FUZZ_BUILD)/llhttp/%.o,$(LLHTTP_SRCS))
FUZZ_RUN_OPTS ?= -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

.PHONY: fuzz fuzz-build fuzz-smoke
fuzz-build: $(FUZZ_BINS)

ifeq ($(filter $(BUILD)/%,$(FUZZ_BUILD)),)
-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
endif

# Daemon sources (and the OIDC test kit): warnings shown, not fatal (the gcc build is the warning gate).
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(QUIET_CC)$(FUZZ_CC) $(FUZZ_BASE) $(FUZZ_WARN) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c
	@mkdir -p $(dir $@)
	$(QUIET_CC)$(FUZZ_CC) -std=c11 -g -O1 -w -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC_DIR) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@rm -f $@
	$(QUIET_AR)ar rcs $@ $^

# Fuzz targets themselves: strict warnings, -Werror.
$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(QUIET_LINK)$(FUZZ_CC) $(FUZZ_BASE) $(FUZZ_WARN) -Werror -Ifuzz -Itests/unit/support -fsanitize=fuzzer -MMD -MP -o $@ $< $(FUZZ_LIB) $(PKG_LIBS) -lm

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts; \
	  dict=; [ -f fuzz/dict/$$t.dict ] && dict=-dict=fuzz/dict/$$t.dict; \
	  echo "== $$t ($(FUZZ_SECONDS)s)"; \
	  $(FUZZ_BUILD)/$$t $(FUZZ_RUN_OPTS) $$dict -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t </dev/null \
	    > $(FUZZ_BUILD)/$$t.log 2>&1 || { tail -n 60 $(FUZZ_BUILD)/$$t.log; echo "fuzz: $$t FAILED"; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done' $(FUZZ_BUILD)/$$t.log | tail -n 2; \
	done; echo "fuzz: all targets ran $(FUZZ_SECONDS)s without a crash"

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=20
# ==== end fuzzing ==============================================================================
