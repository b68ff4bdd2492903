# The abqa client image: `abqa evaluate`, `abqa loadtest`, `abqa report`, Locust, `abqa router` and `abqa ui`.
# Triton itself runs from NVIDIA's official image there; this image never serves models.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The project's own files only (see .dockerignore); the model repository, data and runs are mounted.
COPY pyproject.toml README.md LICENSE ./
COPY abqa/ abqa/
COPY export/ export/
COPY serve/ serve/
COPY client/ client/
COPY loadtest/ loadtest/
COPY analysis/ analysis/
COPY router/ router/
COPY ui/ ui/

# torch is pinned to its CPU build: the default index would pull a multi-GB CUDA wheel for a client that
# never runs a model on the GPU.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
    && useradd --create-home --uid 1000 abqa \
    && mkdir -p /app/runs && chown abqa:abqa /app/runs

USER abqa
EXPOSE 8089
ENTRYPOINT ["abqa"]
CMD ["--help"]
