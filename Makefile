# txbox — PGXS build.  `make test` and `make demo` are the two entry points
# a new user needs; both install what they need (see test/run and demo/run).

EXTENSION  = txbox
MODULE_big = txbox
OBJS       = $(patsubst %.c,%.o,$(wildcard src/*.c src/targets/*.c))
EXTVERSION = 0.2.0
# The install script is built from src/sql/*.sql; src/upgrade/ holds the
# released install scripts and the upgrade scripts between releases.
DATA_built = txbox--$(EXTVERSION).sql
DATA       = $(wildcard src/upgrade/txbox--*.sql)
EXTRA_CLEAN = txbox--$(EXTVERSION).sql

# the PostgreSQL to build for: the pg_config on PATH, as for any extension
# (make PG_CONFIG=/usr/lib/postgresql/17/bin/pg_config install)
PG_CONFIG ?= pg_config

# `make installcheck`: the suites against the installed extension and a
# running server started with test/txbox.conf's settings (README,
# PostgreSQL versions).
# TAP_TESTS only switches TAP on: test/suites reads the environment's
# TAP_TESTS (which TAP files to run), left as it is here.
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
ISOLATION    = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --load-extension=txbox
TAP_TESTS   ?= 1
PROVE_TESTS  = test/t/*.pl

PG_CPPFLAGS = -I$(libpq_srcdir) -Isrc
SHLIB_LINK_INTERNAL = $(libpq)
# the http target: libcurl, and OpenSSL's HMAC for its signatures; the kafka
# target: librdkafka
SHLIB_LINK = -lcurl -lcrypto -lrdkafka

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# (after PGXS, which empties it) TxboxTest.pm
PROVE_FLAGS = -I test/t

# every object depends on every header of ours (PGXS tracks no header
# dependencies unless PostgreSQL was configured with --enable-depend):
# a changed struct in a header rebuilds all that might use it
$(OBJS): $(wildcard src/*.h src/targets/*.h)

txbox--$(EXTVERSION).sql: $(sort $(wildcard src/sql/*.sql))
	cat $^ > $@

# CI and `make test` build with WERROR=1: any warning fails the build.
ifdef WERROR
override CFLAGS += -Werror
endif

# TAP tests make their own instances, with test/txbox.conf's settings
installcheck: export TEMP_CONFIG = $(CURDIR)/test/txbox.conf

.PHONY: test test-all demo bench
test:
	bash test/run

test-all:
	bash test/matrix

demo:
	bash demo/run

bench:
	bash bench/run
