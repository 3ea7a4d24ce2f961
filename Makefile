# txbox — PGXS build.  `make test` and `make demo` are the two entry points
# a new user needs; both install what they need (see test/run and demo/run).

EXTENSION  = txbox
MODULE_big = txbox
OBJS       = $(patsubst %.c,%.o,$(wildcard src/*.c src/targets/*.c))
DATA       = src/txbox--0.1.0.sql

PG_CONFIG ?= $(shell test -x /usr/lib/postgresql/15/bin/pg_config && echo /usr/lib/postgresql/15/bin/pg_config || echo pg_config)

PG_CPPFLAGS = -I$(libpq_srcdir) -Isrc
SHLIB_LINK_INTERNAL = $(libpq)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

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
