# Example clients in Go, TypeScript and Java (included from the Makefile, which defines BIN, PY, STAMP).
#
# `make clients-gen` installs the code generators (pinned) and runs `buf generate` with buf.gen.yaml
# into build/clients-gen/<language>; `make clients` builds the three example programs. Downloads are
# cached under build/cache (npm, Maven) and the Go module cache. tests/e2e/test_clients.py runs the
# programs against a live mesh (`make test`).

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
PROTOC_VERSION             := 4.35.1
GRPC_JAVA_VERSION          := 1.85.0
CLIENTS_GEN := build/clients-gen
MVN := mvn -B -q -Dmaven.repo.local=$(CURDIR)/build/cache/m2

.PHONY: clients-gen clients

$(BIN)/protoc-gen-go:
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
# protoc (for its built-in Java generator) and grpc-java's plugin are native executables that
# Maven Central publishes per platform.
$(BIN)/protoc:
	$(MVN) dependency:copy -Dartifact=com.google.protobuf:protoc:$(PROTOC_VERSION):exe:linux-x86_64 \
		-DoutputDirectory=build/cache/protoc
	install -m 0755 build/cache/protoc/protoc-$(PROTOC_VERSION)-linux-x86_64.exe $@
$(BIN)/protoc-gen-grpc-java:
	$(MVN) dependency:copy -Dartifact=io.grpc:protoc-gen-grpc-java:$(GRPC_JAVA_VERSION):exe:linux-x86_64 \
		-DoutputDirectory=build/cache/protoc-gen-grpc-java
	install -m 0755 build/cache/protoc-gen-grpc-java/protoc-gen-grpc-java-$(GRPC_JAVA_VERSION)-linux-x86_64.exe $@
# package-lock.json pins every npm package (ts-proto is the TypeScript generator).
clients/ts/node_modules/.stamp: clients/ts/package.json clients/ts/package-lock.json
	cd clients/ts && npm ci --cache ../../build/cache/npm --no-audit --no-fund --loglevel=error
	touch $@

CLIENT_PLUGINS := $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc $(BIN)/protoc-gen-grpc-java \
	clients/ts/node_modules/.stamp
$(STAMP)/clients-gen: buf.gen.yaml $(PROTOS) $(CLIENT_PLUGINS) | $(STAMP)
	buf generate
	# The generated Go packages are one module, which clients/go/go.mod replaces with this directory.
	printf 'module agentfactory.local/gen/go\n\ngo 1.24\n\nrequire (\n\tgoogle.golang.org/grpc v1.85.0\n\tgoogle.golang.org/protobuf $(PROTOC_GEN_GO_VERSION)\n)\n' \
		> $(CLIENTS_GEN)/go/go.mod
	touch $@
clients-gen: $(STAMP)/clients-gen ## generate Go, TypeScript and Java stubs (buf.gen.yaml) into build/clients-gen

$(STAMP)/clients: $(STAMP)/clients-gen $(wildcard clients/go/*.go clients/go/go.* clients/ts/*.ts clients/ts/*.json) \
		$(shell find clients/java/src -name '*.java') clients/java/pom.xml
	cd clients/go && go build -o ../../build/clients/go-client .
	cd clients/ts && npx tsc -p .
	cd clients/java && $(MVN) package
	touch $@
clients: $(STAMP)/clients ## build the example clients (build/clients/go-client, clients/ts/build, clients/java/target)
