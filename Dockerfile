# echonats image: one image, several roles (gateway / worker / migrate) selected by the command.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Unprivileged runtime user (fixed UID so volume ownership / k8s runAsNonRoot are predictable).
RUN groupadd --system --gid 10001 echonats \
    && useradd --system --uid 10001 --gid echonats --create-home --home-dir /home/echonats echonats

WORKDIR /src
# README.md is required by the build backend (pyproject `readme`); sql/ is packaged as echonats/_sql.
COPY pyproject.toml README.md ./
COPY echonats/ ./echonats/
COPY sql/ ./sql/
RUN pip install --no-cache-dir .

# Run from an empty directory so the source tree in /src never shadows the installed package.
WORKDIR /app
USER 10001:10001

# 8080: gateway HTTP/WebSocket, 9101: worker Prometheus metrics.
EXPOSE 8080 9101

CMD ["echonats", "gateway"]
