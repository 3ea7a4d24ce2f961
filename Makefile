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

PG_CONFIG ?= $(shell test -x /usr/lib/postgresql/15/bin/pg_config && echo /usr/lib/postgresql/15/bin/pg_config || echo pg_config)

PG_CPPFLAGS = -I$(libpq_srcdir) -Isrc
SHLIB_LINK_INTERNAL = $(libpq)
# the http target: libcurl, and OpenSSL's HMAC for its signatures; the kafka
# target: librdkafka
SHLIB_LINK = -lcurl -lcrypto -lrdkafka

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

txbox--$(EXTVERSION).sql: $(sort $(wildcard src/sql/*.sql))
	cat $^ > $@

# CI and `make test` build with WERROR=1: any warning fails the build.
ifdef WERROR
override CFLAGS += -Werror
endif

.PHONY: test demo bench
test:
	bash test/run

demo:
	bash demo/run

bench:
	bash bench/run
