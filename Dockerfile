# leakharness in a container (docs/container.md): Debian 12, the same system package script as CI,
# the project installed (not editable) into /opt/leakharness, run as a non-root user.
#   docker build -t leakharness .
#   docker run --rm -v leakharness-reports:/reports leakharness          # the catalog -> /reports/latest
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/project" leakharness run   # your leakharness.toml
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/project" leakharness check --build prog.c
# With podman on a host without a registry: scripts/build-image.sh (what `make docker` runs).
FROM debian:12-slim

# The full PATH, not "...:$PATH": a base made by `podman import` (the local debootstrap base of
# scripts/build-image.sh) has no PATH of its own, and "$PATH" would expand to nothing.
ENV PATH=/opt/leakharness/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# System packages first, through the script CI uses (one list for both); only the script is
# copied, so editing the project does not re-run apt.
COPY scripts/install-system-packages.sh /tmp/install-system-packages.sh
RUN /tmp/install-system-packages.sh \
    && rm -rf /var/lib/apt/lists/* /tmp/install-system-packages.sh

# The project as a user gets it: `pip install .`, not editable, so the image needs no source
# tree (the wheel carries the templates, data and catalog) and tests what a wheel installs.
# Only what the wheel is built from is copied: a change under tests/ or docs/ keeps this layer.
# PIP_CERT (optional): a CA bundle for pip, where the package index is reached through a proxy
# whose certificate only the host trusts; scripts/build-image.sh mounts the host's bundle for the
# build and names it here.  Unset, pip uses the image's own bundle.
ARG PIP_CERT
COPY pyproject.toml README.md /tmp/leakharness-src/
COPY harness /tmp/leakharness-src/harness
COPY c_fixtures /tmp/leakharness-src/c_fixtures
RUN python3 -m venv /opt/leakharness \
    && /opt/leakharness/bin/pip install --no-cache-dir --disable-pip-version-check "/tmp/leakharness-src[distributed]" \
    && rm -rf /tmp/leakharness-src

# A non-root user.  UID is a build argument so that files the container writes into a bind mount
# can belong to the host user without --user (docker build --build-arg UID="$(id -u)" ...).
# The cache and /reports are mode 1777, like /tmp: `docker run --user "$(id -u):$(id -g)"` (any
# uid, the usual way to get host-owned files) can write there too; the sticky bit keeps one uid
# from deleting another's files.
ARG UID=1000
RUN useradd --create-home --uid "$UID" --user-group --shell /bin/bash leakharness \
    && mkdir -p /project /work /reports /home/leakharness/.cache/leakharness \
    && chown leakharness:leakharness /project /work /reports /home/leakharness/.cache/leakharness \
    && chmod 1777 /reports /home/leakharness/.cache/leakharness
ENV LEAKHARNESS_CACHE=/home/leakharness/.cache/leakharness
USER leakharness
# A project mounted here is found as in its own folder: `run` runs its leakharness.toml (with
# nothing mounted, the catalog); results go to /project/reports/latest, on the host.  (/work, the
# working folder of earlier images, stays for `-w /work`.)
WORKDIR /project

# Reports go to /reports: mount a host folder or a named volume there.  The path is absolute so
# that it does not depend on the working directory (a `docker run -w` or a mounted /project).
VOLUME ["/reports"]
ENTRYPOINT ["leakharness"]
CMD ["run", "--out", "/reports/latest"]
