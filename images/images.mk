# Container images (images/Dockerfile), built with our own dockerd (images/dockerd.sh). Included
# from the Makefile (PY, STAMP, $(STAMP)/apt).
#
#   make images        base (debootstrap, cached) + every service image + Envoy, then stops the daemon
#   make test-images   images, then tests/images: every image reaches SERVING, the system from them
#   make run-containers / stop-containers   the `make run` topology from the images
#
# The base root file system is cached in build/images/ (debootstrap once, ~30 s) and the layers in
# build/docker/data, so a rebuild with nothing changed takes seconds.

DOCKER        := /usr/bin/docker
DOCKER_DIR    := $(CURDIR)/build/docker
DOCKER_ENV    := DOCKER_HOST=unix://$(DOCKER_DIR)/docker.sock DOCKER_BUILDKIT=0
IMAGES_DIR    := build/images
# The debootstrap root file system is cached outside the work tree too, so a fresh clone on the
# same machine (CI) imports it instead of running debootstrap again; `make clean` keeps it.
ROOTFS_CACHE  ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/agentfactory/rootfs-bookworm.tar
IMAGE_TAG     := $(shell awk '/^appVersion:/ {gsub(/"/, "", $$2); print $$2}' helm/agentfactory/Chart.yaml)
IMAGE_BASE    := agentfactory/base:bookworm
IMAGE_TARGETS := registry signer executor scheduler envoy
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# The base carries python3 and the CA bundle; no pip, no compilers (those live in the builder stage).
DEBOOTSTRAP_INCLUDE := python3,ca-certificates

.PHONY: debootstrap-rootfs images images-base images-context images-daemon images-stop test-images run-containers stop-containers

$(IMAGES_DIR)/rootfs-bookworm.tar: | $(STAMP)/apt
	@mkdir -p $(IMAGES_DIR)
	@if [ -s "$(ROOTFS_CACHE)" ]; then echo "base root file system from $(ROOTFS_CACHE)"; cp "$(ROOTFS_CACHE)" $@; exit 0; fi; \
	$(MAKE) --no-print-directory debootstrap-rootfs && mkdir -p "$(dir $(ROOTFS_CACHE))" && cp $@ "$(ROOTFS_CACHE)"

debootstrap-rootfs:
	rm -rf $(IMAGES_DIR)/rootfs
	debootstrap --variant=minbase --include=$(DEBOOTSTRAP_INCLUDE) bookworm $(IMAGES_DIR)/rootfs $(DEBIAN_MIRROR) \
	  > $(IMAGES_DIR)/debootstrap.log
	# Nothing of the host's apt caches or logs in the image; stable member order.
	rm -rf $(IMAGES_DIR)/rootfs/var/cache/apt/archives/*.deb $(IMAGES_DIR)/rootfs/var/lib/apt/lists/* \
	  $(IMAGES_DIR)/rootfs/var/log/*
	tar --sort=name --numeric-owner -C $(IMAGES_DIR)/rootfs -cf $(IMAGES_DIR)/rootfs-bookworm.tar.tmp . \
	  && mv $(IMAGES_DIR)/rootfs-bookworm.tar.tmp $(IMAGES_DIR)/rootfs-bookworm.tar
	rm -rf $(IMAGES_DIR)/rootfs

# A daemon that was already up (make run-containers, a test session) is used and left running.
images-daemon: | $(STAMP)/apt
	@mkdir -p $(DOCKER_DIR); if images/dockerd.sh status >/dev/null 2>&1; then touch $(DOCKER_DIR)/.was-up; \
	else rm -f $(DOCKER_DIR)/.was-up; images/dockerd.sh start; fi

images-stop: ## stop the image daemon (images/dockerd.sh) and unmount what it left
	@images/dockerd.sh stop

images-base: $(IMAGES_DIR)/rootfs-bookworm.tar images-daemon
	@$(DOCKER_ENV) $(DOCKER) image inspect $(IMAGE_BASE) >/dev/null 2>&1 || \
	  { echo "docker import $(IMAGE_BASE)"; $(DOCKER_ENV) $(DOCKER) import \
	    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	    $(IMAGES_DIR)/rootfs-bookworm.tar $(IMAGE_BASE) >/dev/null; }

# The build context is what git tracks (the work tree's version of it) plus the host's CA bundle
# for the builder stage's pip: nothing untracked, nothing from build/ or .venv.
images-context:
	@mkdir -p $(IMAGES_DIR)
	git ls-files -z --cached --others --exclude-standard -- protos services afctl observability examples \
	  requirements.txt images | tar --null -T - --ignore-failed-read -cf $(IMAGES_DIR)/context.tar
	tar -rf $(IMAGES_DIR)/context.tar -C /etc/ssl/certs --transform 's,^ca-certificates.crt,images/build-ca.crt,' \
	  ca-certificates.crt

images: images-base images-context ## build every image (base from debootstrap, cached) with our own dockerd
	@set -e; for t in $(IMAGE_TARGETS); do \
	  echo "docker build --target $$t -t agentfactory/$$t:$(IMAGE_TAG)"; \
	  $(DOCKER_ENV) $(DOCKER) build -q --network host -f images/Dockerfile --target $$t \
	    --build-arg BASE=$(IMAGE_BASE) --build-arg VERSION=$(IMAGE_TAG) \
	    -t agentfactory/$$t:$(IMAGE_TAG) - < $(IMAGES_DIR)/context.tar >/dev/null; \
	done
	@$(DOCKER_ENV) $(DOCKER) image prune -f >/dev/null  # the layers a rebuild replaced
	@$(DOCKER_ENV) $(DOCKER) image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' 'agentfactory/*'
	@$(if $(KEEP_DAEMON),,[ -e $(DOCKER_DIR)/.was-up ] || images/dockerd.sh stop)

test-images: setup $(STAMP)/gen examples ## build the images, then every image test (tests/images)
	$(MAKE) images KEEP_DAEMON=1
	@set +e; $(PY) -m pytest tests/images; rc=$$?; images/dockerd.sh stop; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The `make run` topology from the images: same ports, certificates and configs, every Envoy and
# service a `docker run --network host` under supervisord (mesh/containers.py). Not with `make run` up.
run-containers: setup $(STAMP)/gen examples tools mesh images ## `make run`, every process from its image
	$(PY) -m observability.render --out build/observability --alertmanager-addr 127.0.0.1:9093
	$(PY) -m mesh.containers $(MESH_ARGS) --certs-dir $(CERTS_DIR) --out-dir $(MESH_DIR) --var-dir $(MESH_VAR) up \
		--prometheus build/observability/prometheus.yml --trace-sink --alertmanager build/observability/alertmanager.yml
	$(PY) -m afctl.quickstart

stop-containers: ## stop what `make run-containers` started (and its image daemon)
	$(PY) -m mesh.containers $(MESH_ARGS) --out-dir $(MESH_DIR) --var-dir $(MESH_VAR) down

# `make test` builds the images (cached: seconds when nothing changed) for tests/images, which run
# after tests/e2e in the same sequential pytest session, never beside the ghz gate.
test: images
