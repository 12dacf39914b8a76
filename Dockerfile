# leakharness in a container: the same install script as CI, so one package list serves both.
#   docker build -t leakharness .
#   docker run --rm -v "$PWD/reports:/src/reports" leakharness            # the catalog -> reports/latest
#   docker run --rm -v "$PWD:/work" -w /work leakharness check --build prog.c
FROM debian:12-slim

WORKDIR /src
COPY scripts/install-system-packages.sh scripts/
RUN ./scripts/install-system-packages.sh && rm -rf /var/lib/apt/lists/*

COPY . .
RUN python3 -m venv /opt/leakharness \
    && /opt/leakharness/bin/pip install --no-cache-dir -e '.[test]'
ENV PATH="/opt/leakharness/bin:$PATH" \
    LEAKHARNESS_CACHE=/var/cache/leakharness

ENTRYPOINT ["leakharness"]
CMD ["run", "--out", "reports/latest"]
