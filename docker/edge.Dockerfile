# The camera box: `emotionops edge run` on the edge lock (no TensorFlow), BlazeFace included.
# Build from the repository root:  docker build -f docker/edge.Dockerfile -t emotionops-edge .
# The environment is made by the same Makefile rules as `make setup` (requirements/edge.lock,
# the hash-pinned BlazeFace files), so the image runs exactly what the tests ran.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make unzip \
    && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY Makefile pyproject.toml README.md params.yaml ./
COPY requirements/edge.lock requirements/blazeface.sha256 requirements/
COPY src ./src
RUN make .venv-edge/.installed .venv-edge/share/blazeface/.installed PYTHON_VERSION=3.11 \
    && find .venv-edge -name "__pycache__" -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
# OpenCV's bundled FFmpeg needs no system libraries; libgomp1 serves the interpreters' threads.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 1000 edge \
    && mkdir /data && chown edge /data
COPY --from=build /app /app
WORKDIR /app
USER edge
# Only aggregates leave the box; the outbox and the model cache live on the /data volume.
ENV PATH=/app/.venv-edge/bin:$PATH \
    EMOTIONOPS_DATA_DIR=/data \
    EMOTIONOPS_EDGE_HEALTH_HOST=0.0.0.0 \
    EMOTIONOPS_EDGE_HEALTH_PORT=9108
VOLUME /data
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"
ENTRYPOINT ["emotionops", "edge", "run"]
