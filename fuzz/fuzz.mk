# fuzz.mk — libFuzzer targets for the parsers (included by the Makefile).
#
#   make fuzz                     build build-fuzz/fuzz_<target> with clang
#   make fuzz-run FUZZ_TIME=60    run each target FUZZ_TIME seconds, one at
#                                 a time, on fuzz/corpus/<target> (seeds,
#                                 read only) and build-fuzz/corpus/<target>
#                                 (what the fuzzer adds); a crash stops the
#                                 run and leaves build-fuzz/crash-<target>-*
#   make fuzz-cov                 line coverage of each target's sources
#                                 by its corpus (llvm-cov), no sanitizers
#
# The library objects are built again with clang, coverage instrumentation
# and AddressSanitizer + UBSan into build-fuzz/obj; nothing here touches
# build/ or build-asan/. See fuzz/README.md.

FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_TIME    ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -g -O1 -fno-omit-frame-pointer \
                $(FUZZ_SAN) $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -Isrc
FUZZ_TARGETS := smtp_cmd smtp_data auth config headers reply proxy xclient

# what each target links besides its own file
FUZZ_OBJ_smtp_cmd  := proto/smtp_parse
FUZZ_OBJ_smtp_data := proto/smtp_data
FUZZ_OBJ_auth      := proto/auth
FUZZ_OBJ_config    := core/config core/config_table core/netmask core/yaml_tree
FUZZ_OBJ_headers   := msg/message msg/msg_store core/fdio
FUZZ_OBJ_reply     := net/smtp_client msg/message msg/msg_store msg/msg_stream proto/smtp_stuff \
                      core/fdio core/clock \
                      net/dns net/tls core/config core/config_table core/netmask \
                      core/yaml_tree msg/envelope proto/smtp_parse core/stats
FUZZ_OBJ_proxy     := proto/proxy_parse
FUZZ_OBJ_xclient   := proto/xclient

FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-run fuzz-cov

fuzz: $(FUZZ_BINS)

$(FUZZ_BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%.o: fuzz/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

.PRECIOUS: $(FUZZ_BUILD)/fuzz_%.o $(FUZZ_BUILD)/obj/%.o
.SECONDEXPANSION:
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/fuzz_%.o \
    $$(addprefix $(FUZZ_BUILD)/obj/,$$(addsuffix .o,$$(FUZZ_OBJ_$$*)))
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# -max_total_time bounds each run; -timeout bounds one input (a hang is a
# bug too); -rss_limit_mb bounds memory. Seeds first, then new units.
FUZZ_RUN_FLAGS := -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=1024 \
                  -print_final_stats=1

fuzz-run: fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	    dict=; [ -f fuzz/$$t.dict ] && dict=-dict=fuzz/$$t.dict; \
	    echo "== fuzz $$t for $(FUZZ_TIME) s"; \
	    $(FUZZ_BUILD)/fuzz_$$t $(FUZZ_RUN_FLAGS) $$dict \
	        -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- \
	        $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t 2>$(FUZZ_BUILD)/fuzz-$$t.log \
	      || { tail -60 $(FUZZ_BUILD)/fuzz-$$t.log; exit 1; }; \
	    grep -E '^(#[0-9]+.*DONE|stat::)' $(FUZZ_BUILD)/fuzz-$$t.log || true; \
	done

# ---- coverage: the same targets built with clang's source coverage,
# replaying both corpora once (-runs=0), reported for the files under test
FUZZ_COV_FLAGS := -std=c11 -D_GNU_SOURCE -g -O0 -fprofile-instr-generate -fcoverage-mapping \
                  $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -Isrc
FUZZ_COV_BINS  := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/cov/fuzz_%)

$(FUZZ_BUILD)/cov/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_COV_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/cov/fuzz_%.o: fuzz/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_COV_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

.PRECIOUS: $(FUZZ_BUILD)/cov/fuzz_% $(FUZZ_BUILD)/cov/fuzz_%.o $(FUZZ_BUILD)/cov/obj/%.o
$(FUZZ_BUILD)/cov/fuzz_%: $(FUZZ_BUILD)/cov/fuzz_%.o \
    $$(addprefix $(FUZZ_BUILD)/cov/obj/,$$(addsuffix .o,$$(FUZZ_OBJ_$$*)))
	$(FUZZ_CC) -fprofile-instr-generate -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz-cov: $(FUZZ_TARGETS:%=fuzz-cov-%)

fuzz-cov-%: $(FUZZ_BUILD)/cov/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/corpus/$*
	@LLVM_PROFILE_FILE=$(FUZZ_BUILD)/cov/$*.profraw $< -runs=0 \
	    $(FUZZ_BUILD)/corpus/$* fuzz/corpus/$* >/dev/null 2>&1
	@llvm-profdata merge -sparse -o $(FUZZ_BUILD)/cov/$*.profdata $(FUZZ_BUILD)/cov/$*.profraw
	@echo "== $*"
	@llvm-cov report $< -instr-profile=$(FUZZ_BUILD)/cov/$*.profdata \
	    $(FUZZ_OBJ_$*:%=src/%.c)

-include $(wildcard $(FUZZ_BUILD)/*.d $(FUZZ_BUILD)/obj/*/*.d)
