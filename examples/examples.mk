# Example and hostile agent modules, built from source into build/wasm/ (included by the
# top Makefile, which defines PY, STAMP, $(STAMP)/apt and $(STAMP)/venv).
#
#   examples/agents/<name>/<name>.wat   -> build/wasm/<name>.wasm          (wasmtime.wat2wasm)
#   examples/agents/<name>/<name>.c     -> build/wasm/<name>.wasm          (clang --target=wasm32-wasi)
#   examples/agents/<name>/go.mod       -> build/wasm/<name>.wasm          (GOOS=wasip1 GOARCH=wasm)
#   examples/agents/<name>/<name>.rs    -> build/wasm/<name>.wasm          (rustc --target wasm32-wasi)
#   examples/hostile/<name>/<name>.wat  -> build/wasm/hostile-<name>.wasm
#   examples/hostile/huge-module/huge-module.wat + gen_huge_module.py
#                                       -> build/wasm/hostile-huge-module.wasm (padded past 8 MiB)
#   examples/hostile/many-functions/gen_many_functions.py
#                                       -> build/wasm/hostile-many-functions.wasm (60,000 functions)
#   examples/hostile/deep-nesting/gen_deep_nesting.py
#                                       -> build/wasm/hostile-deep-nesting.wasm (60,000 nested loops)
#   (the three generators write through examples/tools/wasm_writer.py)
# A directory with only a template.json (e.g. text-stats-strict) has no module of its own.

EX       := examples
WASM_OUT := build/wasm

# C: Debian's wasi-libc puts headers in /usr/include/wasm32-wasi and libraries in
# /usr/lib/wasm32-wasi, which clang's wasm32-wasi target finds with the default sysroot.
# Set WASI_SYSROOT to use a wasi-sdk style sysroot instead. Clang links
# libclang_rt.builtins-wasm32.a from the Debian package libclang-rt-dev-wasm32.
WASI_CC      ?= clang
WASI_SYSROOT ?=
WASI_CFLAGS  ?= -O2 -Wall -Wextra -Werror
WASI_LDFLAGS ?= -Wl,--strip-all
EX_CC := $(WASI_CC) --target=wasm32-wasi $(if $(WASI_SYSROOT),--sysroot=$(WASI_SYSROOT)) $(WASI_CFLAGS) -I$(EX)/include

# Rust: Debian's rustc with the wasm32-wasi std of libstd-rust-dev-wasm32 (both in APT_PACKAGES), std
# only, one file, no cargo. The full path because a rustup rustc earlier on PATH may lack the target.
# strip=symbols drops the name section and std's debug info (the Rust agent: 143 KB instead of 5.9 MB).
WASI_RUSTC      ?= /usr/bin/rustc
WASI_RUSTFLAGS  ?= --edition 2021 -O -C strip=symbols -D warnings
EX_RUSTC := $(WASI_RUSTC) --target wasm32-wasi $(WASI_RUSTFLAGS)
# The stamp holds the compiler's version and the command line; it is rewritten only when either changes,
# so a rustc upgrade or new flags rebuild the Rust modules and otherwise they stay cached.
EX_RUST_STAMP := $(STAMP)/rust-wasm32

# Go: standard library only; no network, no toolchain switching.
EX_GO_ENV := GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod CGO_ENABLED=0

EX_AGENTS_WAT  := $(notdir $(basename $(wildcard $(EX)/agents/*/*.wat)))
EX_AGENTS_C    := $(notdir $(basename $(wildcard $(EX)/agents/*/*.c)))
EX_AGENTS_GO   := $(notdir $(patsubst %/go.mod,%,$(wildcard $(EX)/agents/*/go.mod)))
EX_AGENTS_RS   := $(notdir $(basename $(wildcard $(EX)/agents/*/*.rs)))
EX_HOSTILE_WAT := $(filter-out huge-module,$(notdir $(basename $(wildcard $(EX)/hostile/*/*.wat))))
EX_HOSTILE_GEN := huge-module many-functions deep-nesting

EX_MODULES := $(foreach n,$(EX_AGENTS_WAT) $(EX_AGENTS_C) $(EX_AGENTS_GO) $(EX_AGENTS_RS),$(WASM_OUT)/$(n).wasm) \
              $(foreach n,$(EX_HOSTILE_WAT) $(EX_HOSTILE_GEN),$(WASM_OUT)/hostile-$(n).wasm)

examples: $(STAMP)/apt $(STAMP)/venv $(STAMP)/apt-wasm-rt $(EX_MODULES) ## build the example and hostile agent modules into build/wasm/

# The compiler-rt builtins clang links into every wasm32 C program (Debian ships them apart).
WASM_RT_PACKAGES := libclang-rt-dev-wasm32
$(STAMP)/apt-wasm-rt: | $(STAMP)/apt
	@missing=""; for p in $(WASM_RT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	touch $@

$(WASM_OUT):
	@mkdir -p $@

# $(1) = source, $(2) = module name
define EX_WAT_RULE
$(WASM_OUT)/$(2).wasm: $(1) $(EX)/tools/wat2wasm.py | $(STAMP)/venv $(WASM_OUT)
	$(PY) $(EX)/tools/wat2wasm.py $$< $$@
endef

define EX_C_RULE
$(WASM_OUT)/$(1).wasm: $(EX)/agents/$(1)/$(1).c $(EX)/include/agentfactory.h | $(STAMP)/apt $(STAMP)/apt-wasm-rt $(WASM_OUT)
	$(EX_CC) -o $$@ $$< $(WASI_LDFLAGS)
endef

define EX_GO_RULE
$(WASM_OUT)/$(1).wasm: $(wildcard $(EX)/agents/$(1)/*.go) $(EX)/agents/$(1)/go.mod | $(WASM_OUT)
	cd $(EX)/agents/$(1) && $(EX_GO_ENV) go build -trimpath -ldflags='-s -w' -o $(CURDIR)/$$@ .
endef

# rustc's linker writes the module in place, with temporary objects beside it: build in a private
# directory and move the module in, so an interrupted build never leaves a partial module make trusts.
.PHONY: examples-rust-toolchain
$(EX_RUST_STAMP): examples-rust-toolchain | $(STAMP)/apt
	@{ $(WASI_RUSTC) --version && echo '$(EX_RUSTC)'; } > $@.new 2>&1; \
	if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; fi

define EX_RS_RULE
$(WASM_OUT)/$(1).wasm: $(EX)/agents/$(1)/$(1).rs $(EX_RUST_STAMP) | $(STAMP)/apt $(WASM_OUT)
	@rm -rf $(WASM_OUT)/.rust-$(1) && mkdir -p $(WASM_OUT)/.rust-$(1)
	$(EX_RUSTC) -o $(WASM_OUT)/.rust-$(1)/$(1).wasm $$<
	@mv $(WASM_OUT)/.rust-$(1)/$(1).wasm $$@ && rm -rf $(WASM_OUT)/.rust-$(1)
endef

$(foreach n,$(EX_AGENTS_WAT),$(eval $(call EX_WAT_RULE,$(EX)/agents/$(n)/$(n).wat,$(n))))
$(foreach n,$(EX_HOSTILE_WAT),$(eval $(call EX_WAT_RULE,$(EX)/hostile/$(n)/$(n).wat,hostile-$(n))))
$(foreach n,$(EX_AGENTS_C),$(eval $(call EX_C_RULE,$(n))))
$(foreach n,$(EX_AGENTS_GO),$(eval $(call EX_GO_RULE,$(n))))
$(foreach n,$(EX_AGENTS_RS),$(eval $(call EX_RS_RULE,$(n))))

$(WASM_OUT)/hostile-huge-module.wasm: $(EX)/hostile/huge-module/gen_huge_module.py $(EX)/hostile/huge-module/huge-module.wat $(EX)/tools/wasm_writer.py | $(STAMP)/venv $(WASM_OUT)
	$(PY) $(wordlist 1,2,$^) $@

$(WASM_OUT)/hostile-many-functions.wasm: $(EX)/hostile/many-functions/gen_many_functions.py $(EX)/tools/wasm_writer.py | $(STAMP)/venv $(WASM_OUT)
	$(PY) $< $@

$(WASM_OUT)/hostile-deep-nesting.wasm: $(EX)/hostile/deep-nesting/gen_deep_nesting.py $(EX)/tools/wasm_writer.py | $(STAMP)/venv $(WASM_OUT)
	$(PY) $< $@
