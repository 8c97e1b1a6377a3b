# kasi — build, test, run and benchmark.
#
#   make            build ./kasi
#   make run        install missing packages, build, run with config/
#   make test       install missing packages, build, run the suite (prove)
#   make asan       build build-asan/kasi with AddressSanitizer + UBSan
#   make test-asan  the suite against the sanitizer build
#   make bench      benchmarks (see contrib/bench/)
#   make nostats    build build-nostats/kasi with the statistics compiled out (for make bench)
#   make check-layers  fail on an include that points up (see src/README)
#   make install    install under PREFIX (and DESTDIR); see docs/install.md
#   make uninstall  remove what make install put under PREFIX (not config, spool)
#   make deb        build a Debian package into $(BUILD)/deb/ (debian/)
#   make fuzz       libFuzzer targets (clang); make fuzz-run FUZZ_TIME=60
#   make soak       soak and overload test (contrib/bench/soak.py)

CC      ?= cc
PKGS    := libevent_core libevent_extra libevent_openssl luajit yaml-0.1 openssl libcares hiredis
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
VERSION := $(shell sed -n 's/^\#define KASI_VERSION "\(.*\)"$$/\1/p' src/core/version.h)

# Installation layout (docs/install.md). DATADIR is compiled into
# core/paths.o and SPOOLDIR into core/config.o; a change rebuilds those two.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
DATADIR    ?= $(PREFIX)/share/kasi
DOCDIR     ?= $(PREFIX)/share/doc/kasi
SYSCONFDIR ?= /etc/kasi
SPOOLDIR   ?= /var/spool/kasi
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
KASI_USER  ?=


.PHONY: all run test unit asan test-asan deps bench nostats clean check-layers \
        install uninstall deb soak FORCE

all: kasi

-include t/helpers/helpers.mk
-include fuzz/fuzz.mk

kasi: $(BUILD)/kasi
	ln -sf $(BUILD)/kasi kasi

$(BUILD)/kasi: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/%.o: src/%.c | $(BUILD)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/core/paths.o: CPPFLAGS += -DKASI_DATADIR='"$(DATADIR)"'
$(BUILD)/core/config.o: CPPFLAGS += -DKASI_SPOOLDIR='"$(SPOOLDIR)"'
$(BUILD)/t/config: CPPFLAGS += -DKASI_SPOOLDIR='"$(SPOOLDIR)"'
$(BUILD)/core/paths.o $(BUILD)/core/config.o $(BUILD)/t/config: $(BUILD)/paths.stamp
$(BUILD)/paths.stamp: FORCE | $(BUILD)
	@echo '$(DATADIR) $(SPOOLDIR)' | cmp -s - $@ || echo '$(DATADIR) $(SPOOLDIR)' > $@

# the page is embedded with .incbin: rebuild when it changes
$(BUILD)/net/http_assets.o: $(wildcard src/www/*)

$(BUILD)/t/%: t/unit/%.c $(LIBOBJ) t/unit/tap.h | $(BUILD)
	@mkdir -p $(BUILD)/t
	$(CC) $(CPPFLAGS) $(CFLAGS) -It/unit -o $@ $< $(LIBOBJ) $(LDFLAGS) $(LDLIBS)

$(BUILD):
	mkdir -p $(BUILD)

unit: $(UNITBIN) $(HELPERS)

deps:
	@contrib/deps.sh

# As root, the workers (and so the plugins) run as nobody when nobody can
# reach this tree, else as root, said out loud; production configs name
# their user in smtp.yaml (user:).
RUN_USER = $(shell [ "$$(id -u)" = 0 ] && { runuser -u nobody -- test -x "$(CURDIR)" 2>/dev/null \
             && echo nobody || echo root; })

run: deps
	$(MAKE) kasi
	@[ -z "$(RUN_USER)" ] || echo "make run: started as root, the workers run as $(RUN_USER) (--user)"
	./kasi -c config $(if $(RUN_USER),--user $(RUN_USER))

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

# the same binary with the counters compiled out (KASI_STATS_OFF): make
# bench runs the chain scenario with both to measure what counting costs
nostats:
	$(MAKE) BUILD=build-nostats OPT="$(OPT) -DKASI_STATS_OFF" build-nostats/kasi

bench: deps kasi nostats $(BUILD)/hook_cost
	contrib/bench/run.sh

# make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc/kasi]
#   [SPOOLDIR=/var/spool/kasi] [SYSTEMDUNITDIR=$(PREFIX)/lib/systemd/system]
#   [KASI_USER=]: the configuration is installed only where missing; a
#   changed file is kept and the new default put beside it as FILE.dist.
install: $(BUILD)/kasi
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BUILD)/kasi $(DESTDIR)$(SBINDIR)/kasi
	contrib/install.sh tree lua plugins config $(DESTDIR)$(DATADIR)
	contrib/install.sh tree README.md docs/*.md $(DESTDIR)$(DOCDIR)
	contrib/install.sh tree contrib/postfix $(DESTDIR)$(DOCDIR)/examples
	rm -rf $(BUILD)/sysconf
	contrib/install.sh sysconf config $(BUILD)/sysconf '$(SPOOLDIR)' '$(KASI_USER)'
	contrib/install.sh conf $(BUILD)/sysconf $(DESTDIR)$(SYSCONFDIR)
	contrib/install.sh spool $(DESTDIR)$(SPOOLDIR) '$(if $(DESTDIR),,$(KASI_USER))'
	$(if $(SYSTEMDUNITDIR),contrib/install.sh units contrib/systemd $(DESTDIR)$(SYSTEMDUNITDIR) \
	  '$(SBINDIR)' '$(SYSCONFDIR)' '$(SPOOLDIR)' '$(DOCDIR)')

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/kasi
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)
	$(if $(SYSTEMDUNITDIR),rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/kasi.service $(DESTDIR)$(SYSTEMDUNITDIR)/kasi.socket)

# make deb: the tree is copied to $(BUILD)/deb/kasi-VERSION, its changelog
# written with the version of src/core/version.h, and dpkg-buildpackage
# builds $(BUILD)/deb/kasi_VERSION_ARCH.deb there (the tree itself is not
# touched).
DEBDIR := $(BUILD)/deb
deb:
	rm -rf $(DEBDIR)
	mkdir -p $(DEBDIR)/kasi-$(VERSION)
	tar -cf - Makefile README.md src lua plugins config contrib docs debian \
	  | tar -xf - -C $(DEBDIR)/kasi-$(VERSION)
	contrib/install.sh changelog $(VERSION) > $(DEBDIR)/kasi-$(VERSION)/debian/changelog
	cd $(DEBDIR)/kasi-$(VERSION) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	  DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -b -us -uc
	@ls $(DEBDIR)/kasi_$(VERSION)_*.deb

# bounded soak/overload run (not part of make test): 10,000 connections,
# 60 s by default; SOAK_FLAGS="--duration 30 --connections 2000" to vary
SOAK_FLAGS ?=
soak: deps kasi
	contrib/bench/soak.py --kasi $(CURDIR)/$(BUILD)/kasi --results bench/RESULTS.md $(SOAK_FLAGS)

clean:
	rm -rf build build-asan build-fuzz build-nostats kasi

-include $(OBJ:.o=.d)
