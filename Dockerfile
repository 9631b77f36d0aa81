# One image for the search server and the stream worker (same package, different entry points).
FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
COPY constraints.txt requirements.txt requirements-dev.txt pyproject.toml README.md Makefile ./
COPY platform platform
# Same order as `make install`: torch first and alone (point pip at a CPU-only torch wheel
# through PIP_EXTRA_INDEX_URL or a mirror to keep the image small), torchrec without dependency
# resolution, then the rest pinned by constraints.txt.
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir -c constraints.txt --no-deps torchrec==1.8.0 fbgemm-gpu-cpu==1.8.0 \
 && pip install --no-cache-dir -c constraints.txt -r requirements.txt \
 && pip install --no-cache-dir --no-deps -e .
COPY feature_repo feature_repo
COPY servers servers
COPY configs configs
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2
