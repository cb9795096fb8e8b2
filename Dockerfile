# The ML environment as an image: the emotionops CLI and everything its stages need.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY requirements/ml.lock requirements/ml.lock
RUN uv pip sync --system requirements/ml.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN uv pip install --system --no-deps .
ENTRYPOINT []
CMD ["emotionops", "--help"]
