# kasi — build, test, run and benchmark.
#
#   make            build ./kasi
#   make run        install missing packages, build, run with config/
#   make test       install missing packages, build, run the suite (prove)
#   make asan       build build-asan/kasi with AddressSanitizer + UBSan
#   make test-asan  the suite against the sanitizer build
#   make bench      benchmarks (see contrib/bench/)
#   make check-layers  fail on an include that points up (see src/README)

CC      ?= cc
PKGS    := libevent_core libevent_extra libevent_openssl luajit yaml-0.1 openssl libcares
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -g $(OPT) -MMD -MP \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -Isrc
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lm

SRC     := $(wildcard src/*.c src/*/*.c)
OBJ     := $(SRC:src/%.c=$(BUILD)/%.o)
LIBOBJ  := $(filter-out $(BUILD)/main.o,$(OBJ))
UNIT    := $(wildcard t/unit/*.c)
UNITBIN := $(UNIT:t/unit/%.c=$(BUILD)/t/%)


.PHONY: all run test unit asan test-asan deps bench clean check-layers

all: kasi

-include t/helpers/helpers.mk

kasi: $(BUILD)/kasi
	ln -sf $(BUILD)/kasi kasi

$(BUILD)/kasi: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/%.o: src/%.c | $(BUILD)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/t/%: t/unit/%.c $(LIBOBJ) t/unit/tap.h | $(BUILD)
	@mkdir -p $(BUILD)/t
	$(CC) $(CFLAGS) -It/unit -o $@ $< $(LIBOBJ) $(LDFLAGS) $(LDLIBS)

$(BUILD):
	mkdir -p $(BUILD)

unit: $(UNITBIN) $(HELPERS)

deps:
	@contrib/deps.sh

run: deps
	$(MAKE) kasi
	./kasi -c config

check-layers:
	@contrib/check-layers src

test: deps check-layers
	$(MAKE) kasi unit
	KASI_BIN=$(CURDIR)/$(BUILD)/kasi KASI_UNIT=$(CURDIR)/$(BUILD)/t \
	  prove $(PROVEFLAGS) $(UNITBIN) t/*.t

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -DKASI_ABORT_ON_CHECK" \
	  LDFLAGS="-fsanitize=address,undefined" build-asan/kasi unit

test-asan: deps asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	KASI_BIN=$(CURDIR)/build-asan/kasi KASI_UNIT=$(CURDIR)/build-asan/t KASI_ASAN=1 \
	  prove $(PROVEFLAGS) $(UNIT:t/unit/%.c=build-asan/t/%) t/*.t

$(BUILD)/hook_cost: contrib/bench/hook_cost.c $(LIBOBJ) | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LIBOBJ) $(LDFLAGS) $(LDLIBS)

bench: deps kasi $(BUILD)/hook_cost
	contrib/bench/run.sh

clean:
	rm -rf build build-asan kasi

-include $(OBJ:.o=.d)
